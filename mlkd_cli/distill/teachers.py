"""Monolingual teachers: loading and checking them, and routing each utterance to its own.

A batch may mix languages: every language's utterances form a sub-batch that goes through
that language's teacher, and the targets keep the positions of those utterances in the batch.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import torch

from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.config import FeatureSpec
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.fsutil import file_digest
from mlkd_cli.models import CtcModel

logger = logging.getLogger("mlkd")


@dataclasses.dataclass
class Teacher:
    lang: str
    exp_dir: Path
    model: CtcModel
    digest: str  # of final.pt: cached targets are keyed by it

    @property
    def num_layers(self) -> int:
        return self.model.config.num_layers

    @property
    def width(self) -> int:
        return self.model.config.d_model


def parse_teacher_arg(arg: str) -> tuple[Optional[str], Path]:
    """``DIR`` (language from its config.yaml) or ``LANG=DIR``."""
    lang, sep, path = arg.partition("=")
    return (lang, Path(path)) if sep and lang and "/" not in lang else (None, Path(arg))


def load_teachers(args: list[str], data: PreparedData, data_langs: list[str]) -> dict[str, Teacher]:
    """One teacher per language of the data, each checked against the data's tokens and features."""
    teachers: dict[str, Teacher] = {}
    features = FeatureSpec(**data.feature_signature())
    for arg in args:
        lang, exp_dir = parse_teacher_arg(arg)
        loaded = load_model_dir(exp_dir)
        loaded.check_fits(data)
        lang = lang or loaded.own_language
        if not lang:
            raise ConfigError(f"{exp_dir / 'config.yaml'}: not a teacher of one language; name its language as LANG={exp_dir}")
        if lang in teachers:
            raise ConfigError(f"two teachers for language {lang!r}: {teachers[lang].exp_dir} and {exp_dir}; keep one")
        if lang not in data_langs:
            raise DataError(
                f"{exp_dir}: teacher for language {lang!r}, which the training data in {data.root} does not have "
                f"(its languages: {', '.join(data_langs)}); leave this teacher out"
            )
        theirs = loaded.inference.features
        if theirs != features:
            diff = ", ".join(f"{f.name} {getattr(theirs, f.name)} vs {getattr(features, f.name)}"
                             for f in dataclasses.fields(FeatureSpec) if getattr(theirs, f.name) != getattr(features, f.name))
            raise ConfigError(
                f"{exp_dir}: the teacher was trained on features that differ from {data.root}'s ({diff}); "
                "prepare the data with the teacher's feature settings or retrain the teacher"
            )
        loaded.model.eval().requires_grad_(False)
        teachers[lang] = Teacher(lang, exp_dir, loaded.model, file_digest(loaded.weights))
    missing = [lang for lang in data_langs if lang not in teachers]
    if missing:
        raise DataError(
            f"no teacher for language(s) {', '.join(missing)} of the training data in {data.root}; train one with "
            f"`mlkd train-teacher --data {data.root} --lang {missing[0]} exp/teacher_{missing[0]}` and pass it"
        )
    return teachers


@dataclasses.dataclass
class LanguageTargets:
    """One language's teacher targets for its utterances in a batch."""

    index: torch.Tensor  # (n,) positions in the batch
    lengths: torch.Tensor  # (n,) valid frames
    hidden: list[torch.Tensor]  # per mapped layer pair, (n, T, D_teacher)
    log_probs: Optional[torch.Tensor] = None  # (n, T, V)
    attention: Optional[list[torch.Tensor]] = None  # per pair, (n, H, T, T)

    def to(self, device: torch.device) -> "LanguageTargets":
        def move(x):
            return None if x is None else [t.to(device) for t in x] if isinstance(x, list) else x.to(device)

        return LanguageTargets(*(move(getattr(self, f.name)) for f in dataclasses.fields(self)))


class RoutedTargets(dict):
    """language → :class:`LanguageTargets`; travels with a Batch (``Batch.extra``)."""

    def to(self, device: torch.device) -> "RoutedTargets":
        return RoutedTargets({lang: t.to(device) for lang, t in self.items()})


def language_groups(langs: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, lang in enumerate(langs):
        groups.setdefault(lang, []).append(i)
    return groups


@torch.no_grad()
def run_teachers(
    teachers: dict[str, Teacher],
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    langs: list[str],
    layers: dict[str, list[int]],
    log_probs: bool = False,
    attention: bool = False,
) -> RoutedTargets:
    """Every utterance through its own language's teacher; ``layers`` are 1-based per language."""
    targets = RoutedTargets()
    for lang, rows in language_groups(langs).items():
        if lang not in teachers:
            raise DataError(f"utterance in language {lang!r} but no teacher for it (teachers: {', '.join(teachers)})")
        teacher = teachers[lang].model
        if next(teacher.parameters()).device != features.device:
            teacher.to(features.device)
        index = torch.tensor(rows, device=features.device)
        lens = feature_lens[index]
        out = teacher(features[index, : int(lens.max())], lens, return_attention=attention)
        picked = layers[lang]
        targets[lang] = LanguageTargets(
            index=index,
            lengths=out.lengths,
            hidden=[out.hidden[i - 1] for i in picked],
            log_probs=out.log_probs if log_probs else None,
            attention=[out.attention[i - 1] for i in picked] if attention else None,
        )
    return targets
