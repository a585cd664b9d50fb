"""Multi-teacher, layer-wise knowledge distillation: the teacher ensemble and its targets, the cached
targets, pseudo-labels and losses; the stage is :mod:`mlkd_cli.training_stages.distill`."""
