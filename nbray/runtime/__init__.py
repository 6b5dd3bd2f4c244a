"""nbray runtime: scheduler, workers and node services."""
