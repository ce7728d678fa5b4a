"""The ``simpler`` suite: SimplerEnv-style tabletop tasks built from primitives on ManiSkill3.

Plain Python, importable without a simulator (listing the suite, checking options, unit tests):

* :mod:`.spec` (tasks, variants, settings), :mod:`.episodes` (initial conditions), :mod:`.suite`
  (the episode list) and :mod:`.report` (per-variant tables);
* :mod:`.catalogue` (every number of the scene), :mod:`.view` (one sub-environment as the rules
  see it), :mod:`.tasks` (the rules of each task family), :mod:`.appearance` (what a variant
  changes), :mod:`.options` (checking a reset's options), :mod:`.tracker` (one episode's
  bookkeeping), :mod:`.observation`, :mod:`.overlay` (greenscreen) and :mod:`.actions` (action
  convention);
* :mod:`.backend` and :mod:`.pool` import torch or the simulator only when called.

On ManiSkill3 (``mani_skill``/``sapien``/``torch``), bottom to top: :mod:`.build` builds every
body from primitives, :mod:`.scene` is the ManiSkill env that sets each sub-environment up
through the rules, :mod:`.batch` runs one episode per sub-environment for the harness, and
:mod:`.env` is the Gymnasium env ``vlaeval/Simpler-v0`` (one slot of a batch).
"""
