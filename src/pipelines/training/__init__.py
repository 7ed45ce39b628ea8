"""Training the way the fit stage does: the Trainer, checkpoints, progress."""
