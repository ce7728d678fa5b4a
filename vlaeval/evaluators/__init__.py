"""Running evaluations: the episode loop, sharding over workers, durable results, resume."""
