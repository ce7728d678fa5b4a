"""A third-party distribution whose vlaeval plugins are all broken, one way per entry point."""
