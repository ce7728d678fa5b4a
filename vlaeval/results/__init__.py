"""Per-episode results, metrics with intervals, reports and the regression gate."""
