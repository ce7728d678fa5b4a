"""CALVIN-compatible chained-task play table on PyBullet.

This package's ``__init__`` and ``spec`` module stay free of pybullet so the suite can be listed
without importing a simulator; ``env`` and the modules it uses import pybullet.
"""
