"""The ``simpler`` suite: SimplerEnv-style tabletop tasks built from primitives on ManiSkill3.

Importing this package (or :mod:`vlaeval.envs.simpler.spec`, :mod:`.episodes`, :mod:`.suite`,
:mod:`.overlay`, :mod:`.actions`, :mod:`.backend`, :mod:`.pool`) imports no simulator; only
:mod:`vlaeval.envs.simpler.env` imports ``mani_skill``/``sapien``/``torch`` (the pool and the
backend check import them when called).
"""
