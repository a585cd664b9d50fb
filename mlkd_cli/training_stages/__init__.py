"""The training stages, one module each: ``train-teacher``, ``distill`` and ``finetune``.

Each is a :class:`~mlkd_cli.train.runner.TrainingStage` (the engine in :mod:`mlkd_cli.train`
runs it) that builds its objective from the model, the data and, for distillation, the
parts in :mod:`mlkd_cli.distill`. Not to be confused with :mod:`mlkd_cli.stage`, the
protocol every command's experiment dir follows (stage.json, locking, up-to-date checks).
"""
