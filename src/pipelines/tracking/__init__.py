"""MLflow: the run's tracker, its Lightning logger, sweeps, earlier runs as inputs."""
