"""The training engine: one loop, batches, checkpoints, augmentation and the runner that the
training stages (:mod:`mlkd_cli.training_stages`) extend; each stage passes in its objective."""
