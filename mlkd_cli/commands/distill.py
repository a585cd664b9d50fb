"""`mlkd distill --data DIR TEACHER... EXP_DIR`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from mlkd_cli.commands.options import training_options


@click.command(context_settings={"show_default": True})
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Data dir made by `mlkd prepare` (all languages).")
@click.option("--model-config", type=click.Path(dir_okay=False, path_type=Path),
              help="Student model YAML, e.g. conf/model/student_demo.yaml.")
@click.option("--kd-config", type=click.Path(dir_okay=False, path_type=Path),
              help="Distillation objective YAML (layers, weights, targets), e.g. conf/kd/demo.yaml.")
@click.option("--targets", type=click.Choice(["cached", "on-the-fly"]), help="Override where teacher targets come from.")
@click.option("--kl-weight", type=float, help="Override kd kl_weight (the teachers' posteriors).")
@click.option("--kd-weight", type=float, help="Override λ of every layer pair of kd layer_weights.")
@click.option("--layer-map", metavar="S:T,...",
              help="Override the layer pairs: student layer S learns teacher layer T (1:2,3:4,6:6), or "
                   "student layers alone (2,4,6: the teachers' layers at the same relative depth).")
@click.option("--unlabeled-set", "unlabeled_sets", multiple=True, metavar="NAME",
              help="An untranscribed set of the data dir, taught by the teachers alone (repeatable); "
                   "kd unlabeled_share sets its share of the training utterances.")
@click.option("--lid-weight", type=float, default=1.0, help="λ of the student's language-ID cross-entropy.")
@click.option("--plain-student", is_flag=True,
              help="Distill a plain CTC student (no language-ID head, no language conditioning).")
@training_options
@click.argument("teachers", nargs=-1, required=True)
@click.argument("exp_dir", type=click.Path(file_okay=False, path_type=Path))
def distill(data_dir: Path, model_config: Path | None, kd_config: Path | None, targets: str | None,
            kl_weight: float | None, kd_weight: float | None, layer_map: str | None, unlabeled_sets: tuple[str, ...], lid_weight: float, plain_student: bool, train_config,
            max_steps, precision, seed, noise_sets, rir_sets, train_set: str, dev_set: str, force: bool, teachers: tuple[str, ...],
            exp_dir: Path) -> None:
    """Distill one teacher per language into a multilingual student in EXP_DIR.

    A TEACHER is an mlkd experiment dir (DIR or LANG=DIR; a language-adaptive student named as
    DIR teaches each of its languages, e.g. a full-context student teaching a streaming one),
    a Hugging Face CTC checkpoint dir (LANG=hf:DIR, needs `pip install 'mlkd[hf]'`) or a
    sherpa-onnx CTC model dir (LANG=onnx:DIR, or LANG=onnx-<loader>:DIR with loader
    zipformer-ctc, nemo-ctc, wenet-ctc).
    Every utterance is distilled from its own language's teacher: the student's layers learn
    the teacher's hidden layers through per-language projections, at the student's frame
    rate; posteriors go through a vocabulary map; black boxes teach by their transcripts
    (kd sequence_weight). Untranscribed audio (--unlabeled-set) is taught the same way, without
    the CTC term on transcripts. `mlkd teacher-info` shows what a teacher can serve. Interrupted
    runs resume; finished ones with unchanged inputs are left alone.

    \b
    Example:
      mlkd distill --data data --model-config conf/model/student_demo.yaml \\
        --kd-config conf/kd/demo.yaml --train-config conf/train/distill_demo.yaml \\
        --unlabeled-set unlabeled exp/teacher_{en,de,es,it} ru=hf:models/xlsr-ru exp/student_kd
    """
    from mlkd_cli.commands.options import load_train_config
    from mlkd_cli.config import load_yaml
    from mlkd_cli.training_stages.distill import DistillStage
    from mlkd_cli.experiment.config import DistillConfig, KdConfig
    from mlkd_cli.models import ModelConfig

    model = load_yaml(ModelConfig, model_config) if model_config else ModelConfig()
    kd = load_yaml(KdConfig, kd_config) if kd_config else KdConfig()
    if targets:
        kd = dataclasses.replace(kd, targets=targets)
    kd = kd.overridden(kl_weight, kd_weight, layer_map)
    config = DistillConfig(data=str(data_dir), teachers=teachers, model=model, kd=kd, unlabeled_sets=unlabeled_sets,
                           language_adaptive=not plain_student, lid_weight=lid_weight,
                           train=load_train_config(train_config, max_steps, precision, seed, noise_sets, rir_sets),
                           train_set=train_set, dev_set=dev_set)
    DistillStage(config, exp_dir).run(force=force, argv=["mlkd", *sys.argv[1:]])
