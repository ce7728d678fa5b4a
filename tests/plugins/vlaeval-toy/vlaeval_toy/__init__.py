"""A third-party vlaeval plugin for tests: a 1-D reaching suite (episodic and chained) and agents
that solve it, fail it, or misbehave in the ways the harness must survive."""
