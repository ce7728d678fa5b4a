"""A third-party vlaeval plugin: a 1-D reaching suite (episodic and chained), agents that solve
it, and one example of every other plugin kind (``plugin.py``, quoted by the README); plus, for
vlaeval's own tests, agents that misbehave in the ways the harness must survive (``testing.py``)."""
