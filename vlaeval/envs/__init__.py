"""Simulated suites behind the Gymnasium API.

Kept import-light on purpose: listing suites must not import a simulator.  Importing
:mod:`vlaeval.envs.registration` registers every built-in Gymnasium id (``vlaeval/...``).
"""
