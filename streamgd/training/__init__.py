"""The training core: run settings, the epoch driver, the trainer, holdout, checkpoints, warm start."""
