"""The teacher ensemble of one distillation run: loading and checking its teachers against the
data and the objective, and routing each utterance to its own language's teacher.

A batch may mix languages: every language's utterances form a sub-batch that goes through
that language's teacher, and the targets keep the positions of those utterances in the batch.
Targets come out at the student's frame rate (:mod:`mlkd_cli.teachers.frames`) and, for
posteriors, in the student's vocabulary (:mod:`mlkd_cli.teachers.vocab`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import torch
from lhotse import CutSet
from lhotse.dataset.collation import collate_audio, collate_features

from mlkd_cli.data.prepare import PreparedData, texts_by_language
from mlkd_cli.errors import ConfigError, DataError, MlkdError
from mlkd_cli.experiment.config import FeatureSpec, KdConfig
from mlkd_cli.models.subsampling import subsampled_lengths
from mlkd_cli.teachers.base import Teacher, TeacherInputs
from mlkd_cli.teachers.frames import align_frames
from mlkd_cli.teachers.load import load_teachers_of, parse_teacher_arg
from mlkd_cli.teachers.mlkd import MlkdTeacher
from mlkd_cli.teachers.vocab import VocabMap, build_vocab_map

logger = logging.getLogger("mlkd")


def collate_inputs(cuts: CutSet, audio: bool) -> TeacherInputs:
    """A batch of cuts as the teachers read it (features always; audio when a teacher needs it)."""
    features, lens = collate_features(cuts)
    if not audio:
        return TeacherInputs(features, lens)
    samples, sample_lens = collate_audio(cuts)
    return TeacherInputs(features, lens, samples, sample_lens)


def vocab_map(teacher: Teacher, data: PreparedData, texts: list[str]) -> VocabMap:
    tokenizer = data.tokenizer()
    pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    return build_vocab_map(teacher.tokens, teacher.blank, pieces, data.config.tokenizer.type, texts)


def check_mlkd_teacher(teacher: MlkdTeacher, data: PreparedData) -> None:
    """An mlkd teacher reads the student's features and emits its tokens."""
    teacher.model_dir.check_fits(data)
    features = FeatureSpec(**data.feature_signature())
    theirs = teacher.model_dir.inference.features
    if theirs != features:
        diff = ", ".join(f"{f.name} {getattr(theirs, f.name)} vs {getattr(features, f.name)}"
                         for f in dataclasses.fields(FeatureSpec) if getattr(theirs, f.name) != getattr(features, f.name))
        raise ConfigError(
            f"{teacher.path}: the teacher was trained on features that differ from {data.root}'s ({diff}); "
            "prepare the data with the teacher's feature settings or retrain the teacher"
        )


def own_cuts(cuts: CutSet, lang: str) -> CutSet:
    """The cuts of one language (eager)."""
    return CutSet.from_cuts(c for c in cuts if c.supervisions[0].language == lang)


def no_posteriors(teacher: Teacher, vocab: VocabMap, min_coverage: float) -> Optional[str]:
    """Why this teacher cannot serve posterior KD to this student; None when it can."""
    if not teacher.white_box:
        return "black box"
    if not vocab.frame_level:
        return vocab.reason
    if vocab.coverage < min_coverage:
        return f"coverage below {min_coverage:.0%}"
    return None


def check_serves(teacher: Teacher, kd: KdConfig, vocab: VocabMap, min_coverage: float) -> None:
    """The objective's terms this teacher must serve, checked before anything runs."""
    if not teacher.white_box:
        if kd.sequence_weight <= 0:
            raise ConfigError(f"teacher {teacher.name} is a black box: it serves only sequence-level KD; "
                              "set kd sequence_weight > 0 or give a white-box teacher for that language")
        return
    refusal = no_posteriors(teacher, vocab, min_coverage) if kd.kl_weight > 0 else None
    if refusal and not vocab.frame_level:
        raise ConfigError(f"teacher {teacher.name}: no posterior KD ({refusal}); "
                          "set kd kl_weight: 0, or prepare the data with a char tokenizer")
    if refusal:
        raise ConfigError(f"teacher {teacher.name}: its vocabulary covers {vocab.coverage:.1%} of the "
                          f"{teacher.lang!r} training text's characters (below kd min_vocab_coverage "
                          f"{min_coverage:.0%}; it lacks {' '.join(vocab.uncovered[:10])}); set kd kl_weight: 0")
    if kd.attention_weight > 0 and not isinstance(teacher, MlkdTeacher):
        raise ConfigError(f"teacher {teacher.name}: attention KD needs mlkd teachers; set kd attention_weight: 0")


def smoke_test(teacher: Teacher, cuts: CutSet) -> None:
    """Run the teacher on its language's shortest utterance: a teacher that fails fails here."""
    cut = min(cuts, key=lambda c: c.duration)
    inputs = collate_inputs(CutSet.from_cuts([cut]), audio=teacher.input == "waveform")
    try:
        with torch.inference_mode():
            if teacher.white_box:
                out = teacher.forward(inputs)
                vocab = len(teacher.tokens) if teacher.tokens is not None else out.log_probs.size(-1)
                if len(out.hidden) != teacher.num_layers or out.log_probs.size(-1) != vocab:
                    raise ValueError(f"it gave {len(out.hidden)} layers and {out.log_probs.size(-1)} tokens, "
                                     f"it declares {teacher.num_layers} and {vocab}")
            else:
                teacher.transcribe(inputs)
    except MlkdError:
        raise
    except Exception as e:  # whatever a foreign model raises: name the teacher and the utterance
        raise ConfigError(f"teacher {teacher.name} failed on utterance {cut.id} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); check that it is a CTC model of 16 kHz speech") from None


def load_teachers(args: list[str], data: PreparedData, train_cuts: CutSet, data_langs: list[str],
                  kd: KdConfig) -> tuple[dict[str, Teacher], dict[str, VocabMap]]:
    """One teacher per language of the data, each checked against the data and the objective."""
    teachers: dict[str, Teacher] = {}
    for arg in args:
        spec = parse_teacher_arg(arg)
        if spec.lang and spec.lang in teachers:
            raise ConfigError(f"two teachers for language {spec.lang!r}: {teachers[spec.lang].path} and {spec.path}; keep one")
        if spec.lang and spec.lang not in data_langs:  # before loading anything heavy
            raise DataError(_no_data(spec.path, spec.lang, data, data_langs))
        for teacher in load_teachers_of(spec, data_langs):
            if teacher.lang in teachers:
                raise ConfigError(f"two teachers for language {teacher.lang!r}: {teachers[teacher.lang].path} and "
                                  f"{spec.path}; keep one")
            if teacher.lang not in data_langs:
                raise DataError(_no_data(spec.path, teacher.lang, data, data_langs))
            if isinstance(teacher, MlkdTeacher):
                check_mlkd_teacher(teacher, data)
            teachers[teacher.lang] = teacher
    missing = [lang for lang in data_langs if lang not in teachers]
    if missing:
        raise DataError(
            f"no teacher for language(s) {', '.join(missing)} of the training data in {data.root}; train one with "
            f"`mlkd train-teacher --data {data.root} --lang {missing[0]} exp/teacher_{missing[0]}` and pass it"
        )
    texts = texts_by_language(train_cuts)
    maps = {}
    for lang, teacher in sorted(teachers.items()):
        maps[lang] = vocab_map(teacher, data, texts[lang])
        check_serves(teacher, kd, maps[lang], kd.min_vocab_coverage)
        smoke_test(teacher, own_cuts(train_cuts, lang))
    return teachers, maps


def _no_data(path, lang: str, data: PreparedData, data_langs: list[str]) -> str:
    return (f"{path}: teacher for language {lang!r}, which the training data in {data.root} does not have "
            f"(its languages: {', '.join(data_langs)}); leave this teacher out")


@dataclasses.dataclass
class LanguageTargets:
    """One language's teacher targets for its utterances in a batch, at the student's frame rate."""

    index: torch.Tensor  # (n,) positions in the batch
    lengths: torch.Tensor  # (n,) valid frames
    hidden: list[torch.Tensor]  # per mapped layer pair, (n, T, D_teacher)
    log_probs: Optional[torch.Tensor] = None  # (n, T, V_student)
    attention: Optional[list[torch.Tensor]] = None  # per pair, (n, H, T, T)

    def to(self, device: torch.device) -> "LanguageTargets":
        def move(x):
            return None if x is None else [t.to(device) for t in x] if isinstance(x, list) else x.to(device)

        return LanguageTargets(*(move(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def float(self) -> "LanguageTargets":
        """The targets in fp32 (a teacher may run in bf16)."""
        return dataclasses.replace(self, hidden=[h.float() for h in self.hidden],
                                   log_probs=None if self.log_probs is None else self.log_probs.float(),
                                   attention=None if self.attention is None else [a.float() for a in self.attention])


class RoutedTargets(dict):
    """language → :class:`LanguageTargets`; travels with a Batch (``Batch.extra``)."""

    def to(self, device: torch.device) -> "RoutedTargets":
        return RoutedTargets({lang: t.to(device) for lang, t in self.items()})

    def float(self) -> "RoutedTargets":
        return RoutedTargets({lang: t.float() for lang, t in self.items()})


def language_groups(langs: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, lang in enumerate(langs):
        groups.setdefault(lang, []).append(i)
    return groups


def teacher_targets(teacher: Teacher, inputs: TeacherInputs, layers: list[int], student_shift: float,
                    vocab: Optional[VocabMap] = None, log_probs: bool = False, attention: bool = False) -> LanguageTargets:
    """One teacher's targets for a batch of its own language: chosen layers (1-based), aligned
    to the student's frames, posteriors in the student's vocabulary."""
    out = teacher.forward(inputs, return_attention=attention)
    student_lens = subsampled_lengths(inputs.feature_lens).to(out.lengths.device)
    shift = teacher.frame_shift
    same_frames = abs(shift - student_shift) < 1e-9
    hidden = [align_frames(out.hidden[i - 1], out.lengths, shift, student_shift, student_lens) for i in layers]
    posteriors = None
    if log_probs:
        if same_frames and (vocab is None or vocab.identity):
            posteriors = out.log_probs
        else:
            probs = (vocab.map_probs(out.log_probs) if vocab is not None else out.log_probs.exp())
            posteriors = align_frames(probs, out.lengths, shift, student_shift, student_lens).clamp(min=1e-10).log()
    return LanguageTargets(
        index=torch.empty(0, dtype=torch.long),
        lengths=student_lens,
        hidden=hidden,
        log_probs=posteriors,
        attention=[out.attention[i - 1] for i in layers] if attention else None,
    )


@torch.no_grad()
def run_teachers(
    teachers: dict[str, Teacher],
    inputs: TeacherInputs,
    langs: list[str],
    layers: dict[str, list[int]],
    student_shift: float,
    vocab_maps: Optional[dict[str, VocabMap]] = None,
    log_probs: bool = False,
    attention: bool = False,
) -> RoutedTargets:
    """Every utterance through its own language's (white-box) teacher; ``layers`` are 1-based per language.

    Utterances of languages whose teacher is a black box get no targets here (their teacher's
    transcripts serve sequence-level KD instead).
    """
    targets = RoutedTargets()
    for lang, rows in language_groups(langs).items():
        if lang not in teachers:
            raise DataError(f"utterance in language {lang!r} but no teacher for it (teachers: {', '.join(teachers)})")
        teacher = teachers[lang]
        if not teacher.white_box:
            continue
        teacher.to(inputs.features.device)
        index = torch.tensor(rows, device=inputs.features.device)
        vocab = vocab_maps.get(lang) if vocab_maps else None
        routed = teacher_targets(teacher, inputs.select(index), layers[lang], student_shift, vocab, log_probs, attention)
        targets[lang] = dataclasses.replace(routed, index=index)
    return targets
