"""The ``calvin-upstream`` suite: upstream CALVIN's own ``calvin_env`` behind vlaeval's API.

``spec`` and ``install`` import neither calvin_env nor pybullet, so the suite is listed (and a
missing install reported in one line) without them; ``build``, ``env`` and ``crosscheck`` need
calvin_env, installed by ``scripts/install-calvin-upstream.sh``.
"""
