"""`mlkd distill`: one small multilingual student learns from every language's teacher.

L = Σ_l λ_l ‖h_l^t − P_l(h_l^s)‖²  (+ ctc · L_CTC + inter_ctc · L_CTC(a lower layer)
+ kl · T²·KL(p_t^T ‖ p_s^T) + attention · L_att + sequence · L_CTC(teacher transcript)), each
utterance against its own language's teacher, with learned projections P_l (student width → that
teacher's width) per teacher language.
Teachers of any kind mix (:mod:`mlkd_cli.teachers`): white boxes give layers and posteriors
(aligned to the student's frames, mapped to its vocabulary), black boxes their transcripts.
``final.pt`` holds the student alone; the projections live in the training checkpoints only.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import torch
from lhotse import CutSet
from torch import nn
from torch.nn import functional as F

from mlkd_cli.contracts import OUTPUT_FRAME_MS
from mlkd_cli.data.features import global_stats
from mlkd_cli.data.manifests import is_transcribed
from mlkd_cli.data.prepare import languages
from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.distill.cache import cached_targets, load_cached_targets
from mlkd_cli.distill.ensemble import RoutedTargets, load_teachers, own_cuts, run_teachers
from mlkd_cli.distill.losses import attention_kd_loss, even_layer_map, hidden_kd_loss, posterior_kl_loss
from mlkd_cli.distill.pseudo_labels import teacher_transcripts, with_pseudo_labels
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.experiment.config import DistillConfig, KdConfig
from mlkd_cli.models import CtcModel, CtcOutput, ModelConfig, build_model, ctc_loss, greedy_decode, num_parameters
from mlkd_cli.stage import file_input
from mlkd_cli.teachers.base import Teacher, TeacherInputs
from mlkd_cli.teachers.mlkd import MlkdTeacher
from mlkd_cli.teachers.vocab import VocabMap
from mlkd_cli.train.batches import KD_TEXT, AsrDataset, Batch
from mlkd_cli.train.distributed import DistInfo, on_main
from mlkd_cli.train.loop import autocast
from mlkd_cli.train.runner import TrainingSetup, TrainingStage
from mlkd_cli.train.task import Metrics, char_errors, language_ids

logger = logging.getLogger("mlkd")

@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """Which student layer learns which teacher layer, per language, with which weight."""

    student: list[int]
    teacher: dict[str, list[int]]
    weights: list[float]
    inter_ctc: int = 0  # the student layer the intermediate CTC reads (0: none)


def plan_layers(kd: KdConfig, student: ModelConfig, teachers: dict[str, Teacher]) -> LayerPlan:
    student_layers = list(kd.student_layers) or list(range(1, student.num_layers + 1))
    weights = list(kd.layer_weights) or [1.0] * len(student_layers)
    if len(weights) != len(student_layers):
        raise ConfigError(f"kd layer_weights has {len(weights)} entries for {len(student_layers)} student layers")
    if kd.attention_weight > 0 and student.streaming is not None:
        raise ConfigError("kd attention_weight > 0 with a streaming student: its attention sees chunks, a teacher's the "
                          "whole utterance; set attention_weight: 0")
    bad = [s for s in student_layers if not 1 <= s <= student.num_layers]
    if bad:
        raise ConfigError(f"kd student_layers {bad} are not layers of the {student.num_layers}-layer student")
    inter_ctc = (kd.inter_ctc_layer or student.num_layers // 2) if kd.inter_ctc_weight > 0 else 0
    if inter_ctc >= student.num_layers:
        raise ConfigError(f"kd inter_ctc_layer {inter_ctc} is not below the top of the {student.num_layers}-layer "
                          f"student (the top layer has the CTC loss already); name a layer 1..{student.num_layers - 1}")
    teacher_layers = {}
    for lang, teacher in teachers.items():
        if not teacher.white_box:
            continue
        if kd.teacher_layers:
            layers = list(kd.teacher_layers)
        else:
            pairs = dict(even_layer_map(student.num_layers, teacher.num_layers))
            layers = [pairs[s] for s in student_layers]
        bad = [t for t in layers if not 1 <= t <= teacher.num_layers]
        if bad:
            raise ConfigError(f"teacher {teacher.name}: kd teacher_layers {bad} are not layers of this "
                              f"{teacher.num_layers}-layer teacher; name layers 1..{teacher.num_layers}")
        teacher_layers[lang] = layers
    return LayerPlan(student_layers, teacher_layers, weights, inter_ctc)


class DistillTask(nn.Module):
    """Student + per-language projections; the teachers are frozen and never checkpointed."""

    def __init__(self, student: CtcModel, teachers: dict[str, Teacher], layers: LayerPlan, kd: KdConfig,
                 tokenizer: Tokenizer, lid_weight: float = 0.0, student_shift: float = 0.04,
                 vocab_maps: Optional[dict[str, VocabMap]] = None, teacher_precision: str = "fp32"):
        super().__init__()
        self.teacher_precision = teacher_precision
        self.lid_weight = lid_weight
        self.asr_model = student
        self.teachers = teachers  # a plain dict: not a submodule, so not trained, saved or moved by .to()
        self.layers, self.kd, self.tokenizer = layers, kd, tokenizer
        self.student_shift, self.vocab_maps = student_shift, vocab_maps
        width = student.config.d_model
        self.projections = nn.ModuleDict({
            lang: nn.ModuleList(nn.Linear(width, teacher.layer_widths[t - 1]) for t in layers.teacher[lang])
            for lang, teacher in sorted(teachers.items()) if teacher.white_box and kd.reads_teacher_outputs
        })

    def teacher_targets(self, batch: Batch) -> RoutedTargets:
        if not self.kd.reads_teacher_outputs:
            return RoutedTargets()
        features = batch.features if self.kd.teacher_input == "augmented" else batch.unaugmented
        inputs = TeacherInputs(features, batch.feature_lens, batch.audio, batch.audio_lens)
        with autocast(self.teacher_precision, features.device):
            targets = run_teachers(self.teachers, inputs, batch.langs, self.layers.teacher, self.student_shift,
                                   self.vocab_maps, log_probs=self.kd.kl_weight > 0, attention=self.kd.attention_weight > 0)
        return targets.float()

    def losses(self, out: CtcOutput, targets: RoutedTargets, batch: Batch,
               lang_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and each term; every term is averaged over all valid frames of the batch."""
        kd = self.kd
        frames = sum(int(t.lengths.sum()) for t in targets.values())
        per_layer = [out.output.new_zeros((), dtype=torch.float32) for _ in self.layers.student]
        kl = attention = out.output.new_zeros((), dtype=torch.float32)
        d = kd.delay_ms // OUTPUT_FRAME_MS  # the student's frame t + d learns the teacher's frame t
        for lang, t in targets.items():
            share = int(t.lengths.sum()) / max(frames, 1)
            length = t.hidden[0].size(1)
            lengths = (t.lengths - d).clamp(min=0)
            for k, s in enumerate(self.layers.student):
                projected = self.projections[lang][k](out.hidden[s - 1][t.index, d:length])
                per_layer[k] = per_layer[k] + share * hidden_kd_loss(projected, t.hidden[k][:, :length - d], lengths)
                if kd.attention_weight > 0:
                    student_map = out.attention[s - 1][t.index, :, :length, :length]
                    attention = attention + share * attention_kd_loss(student_map, t.attention[k], t.lengths) / len(per_layer)
            if kd.kl_weight > 0:
                kl = kl + share * posterior_kl_loss(out.log_probs[t.index, d:length], t.log_probs[:, :length - d],
                                                    lengths, kd.kl_temperature, kd.kl_blank_weight)
        terms = {"kd": sum(w * loss for w, loss in zip(self.layers.weights, per_layer))}
        terms.update({f"kd.l{s}": loss for s, loss in zip(self.layers.student, per_layer)})
        if kd.ctc_weight > 0:  # on the transcribed utterances only
            terms["ctc"] = rows_ctc_loss(out.log_probs, out.lengths, batch.targets)
        if self.layers.inter_ctc:
            inter = self.asr_model.head_log_probs(out.hidden[self.layers.inter_ctc - 1])
            terms["inter_ctc"] = rows_ctc_loss(inter, out.lengths, batch.targets)
        if kd.sequence_weight > 0:
            terms["sequence"] = rows_ctc_loss(out.log_probs, out.lengths, batch.pseudo_targets or [])
        if kd.kl_weight > 0:
            terms["kl"] = kl
        if kd.attention_weight > 0:
            terms["attention"] = attention
        if lang_ids is not None and self.lid_weight > 0:
            terms["lid"] = F.cross_entropy(out.lid_logits, lang_ids)
        weights = {"kd": 1.0, "ctc": kd.ctc_weight, "inter_ctc": kd.inter_ctc_weight, "kl": kd.kl_weight,
                   "attention": kd.attention_weight, "sequence": kd.sequence_weight, "lid": self.lid_weight}
        total = sum(weights[name] * value for name, value in terms.items() if name in weights)
        return total, terms

    def _language_ids(self, batch: Batch) -> Optional[torch.Tensor]:
        languages = self.asr_model.config.languages
        return language_ids(languages, batch) if languages else None

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        lang_ids = self._language_ids(batch)  # training conditions on the true language
        out = self.asr_model(batch.features, batch.feature_lens, language=lang_ids,
                             return_attention=self.kd.attention_weight > 0)
        targets = batch.extra if batch.extra is not None else self.teacher_targets(batch)
        total, terms = self.losses(out, targets, batch, lang_ids)
        return total, {name: value.item() for name, value in terms.items()}

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> Metrics:
        lang_ids = self._language_ids(batch)
        out = self.asr_model(batch.features, batch.feature_lens, return_attention=self.kd.attention_weight > 0)
        total, terms = self.losses(out, self.teacher_targets(batch), batch, lang_ids)
        n = len(batch.cut_ids)
        metrics = {"loss": (total.item() * n, n), **{name: (v.item() * n, n) for name, v in terms.items()}}
        if self.kd.ctc_weight > 0 or self.kd.kl_weight > 0 or self.kd.sequence_weight > 0:  # the CTC head is trained: its CER means something
            metrics["cer"] = char_errors(self.tokenizer, greedy_decode(out.log_probs, out.lengths), batch.texts)
        if lang_ids is not None:  # decoded as at test time: conditioned on the predicted language
            metrics["lid_acc"] = ((out.lid_logits.argmax(-1) == lang_ids).sum().item(), n)
        return metrics


def rows_ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: list[Optional[list[int]]]) -> torch.Tensor:
    """CTC over the utterances that have targets (a transcript, or a teacher's transcript); 0 when none has."""
    rows = [i for i, t in enumerate(targets) if t is not None]
    if not rows:
        return log_probs.new_zeros(())
    index = torch.tensor(rows, device=log_probs.device)
    return ctc_loss(log_probs[index], lengths[index], [targets[i] for i in rows])


def teacher_inputs(teachers: dict[str, Teacher]) -> dict[str, dict[str, str]]:
    """Stage-record inputs: an mlkd teacher by its final.pt, others by their directory's digest."""
    return {f"teacher:{lang}": {"path": str((t.path / "final.pt" if isinstance(t, MlkdTeacher) else t.path).resolve()),
                                "digest": t.digest}
            for lang, t in sorted(teachers.items())}


def recorded_spec(teacher: Teacher) -> str:
    """How config.yaml names the teacher (an mlkd one as LANG=DIR, as before other kinds existed)."""
    path = teacher.path.resolve()
    if isinstance(teacher, MlkdTeacher):
        return f"{teacher.lang}={path}"
    kind = f"onnx-{teacher.loader}" if teacher.kind == "onnx" else teacher.kind
    return f"{teacher.lang}={kind}:{path}"


class DistillStage(TrainingStage):
    command = "distill"
    config: DistillConfig

    def resolve(self, config: DistillConfig) -> DistillConfig:
        student = config.model.with_vocab(self.tokenizer.vocab_size)
        langs = self.languages()
        self.unlabeled_cuts = self.select_unlabeled(config.unlabeled_sets, langs)
        if config.kd.unlabeled_share is not None and not config.unlabeled_sets:
            logger.warning("kd unlabeled_share is set, but no untranscribed set is given (--unlabeled-set): ignored")
        if config.language_adaptive:
            student = dataclasses.replace(student, languages=tuple(langs))
        self.teachers, self.vocab_maps = load_teachers(list(config.teachers), self.data, self.train_cuts, langs, config.kd)
        self.student_shift = self.data.feature_signature()["frame_shift"] * student.subsampling
        self.layers = plan_layers(config.kd, student, self.teachers)
        self.inputs.update(teacher_inputs(self.teachers))
        return dataclasses.replace(config, model=student,
                                   teachers=tuple(recorded_spec(t) for _, t in sorted(self.teachers.items())))

    def setup(self, dist: DistInfo) -> TrainingSetup:
        config, teachers, layers, tokenizer = self.config, self.teachers, self.layers, self.tokenizer
        student = build_model(config.model)
        student.encoder.normalizer.set_stats(*global_stats(self.train_cuts))
        task = DistillTask(student, teachers, layers, config.kd, tokenizer, config.lid_weight, self.student_shift,
                           self.vocab_maps, config.teacher_precision)
        teacher_params = max(t.num_parameters for t in teachers.values())
        logger.info("student: %d parameters (%.2f of the largest teacher's %d); layers %s from teachers %s",
                    num_parameters(student), num_parameters(student) / teacher_params, teacher_params, layers.student,
                    "  ".join(f"{lang}:{teachers[lang].kind}:{ls}" for lang, ls in layers.teacher.items()))
        cuts = CutSet.from_cuts([*self.train_cuts, *self.unlabeled_cuts])
        if config.kd.sequence_weight > 0:
            cuts = pseudo_labelled(self.data.root / "teacher_transcripts", self.exp_dir / "teacher_transcripts", teachers, cuts, config, dist,
                                   self.data.config.normalize_text)
        share = config.kd.unlabeled_share if config.unlabeled_sets else None
        if not config.kd.reads_teacher_outputs:  # pseudo-labels alone: no teacher runs while training
            return TrainingSetup(task, cuts, self.dev_cuts,
                                 AsrDataset(tokenizer, config.train.spec_augment, augment=self.augmenter),
                                 AsrDataset(tokenizer), share)
        reads_audio = any(t.white_box and t.input == "waveform" for t in teachers.values())
        if reads_audio and config.kd.teacher_input == "augmented":
            logger.warning("teachers that read audio see it clean: SpecAugment changes only the features")
        dev = AsrDataset(tokenizer, with_audio=reads_audio)  # validation runs the teachers live
        if config.kd.targets == "on-the-fly":
            keep_clean = config.kd.teacher_input == "clean"
            return TrainingSetup(task, cuts, self.dev_cuts, AsrDataset(tokenizer, config.train.spec_augment,
                                                                       keep_clean=keep_clean, with_audio=reads_audio,
                                                                       augment=self.augmenter),
                                 dev, share)
        copies = self.augmenter.prepared.copies if self.augmenter is not None else {}
        copy_cuts = [c for options in copies.values() for c in options if c is not None]
        cached = cache_all(self.data.root / "teacher_targets", self.exp_dir / "teacher_targets", teachers, CutSet.from_cuts([*cuts, *copy_cuts]), layers,
                           self.vocab_maps, self.student_shift, config, dist)
        by_id = {c.id: c for c in cached}
        cached = CutSet.from_cuts(by_id[c.id] for c in cuts)
        if copy_cuts:  # each copy carries the targets of what it sounds like
            self.augmenter.prepared.copies = {k: [c and by_id[c.id] for c in v] for k, v in copies.items()}
        if self.augmenter is not None and self.augmenter.config.noise.prob + self.augmenter.config.volume_prob > 0:
            logger.info("cached teacher targets come from audio without the noise and volume changes the student "
                        "hears (for the teachers to hear what the student hears: kd targets: on-the-fly)")
        return TrainingSetup(task, cached, self.dev_cuts, AsrDataset(tokenizer, config.train.spec_augment,
                                                                     extra=load_cached_targets, augment=self.augmenter),
                             dev, share)

    def augmented_cuts(self) -> CutSet:
        return CutSet.from_cuts([*self.train_cuts, *self.unlabeled_cuts])

    def select_unlabeled(self, names: tuple[str, ...], langs: list[str]) -> CutSet:
        """The utterances of the untranscribed sets, each in a language that has a teacher."""
        out = []
        seen = {cut.id for cut in self.train_cuts}
        validation = {cut.id for cut in self.data.cuts(self.config.dev_set)}
        for name in dict.fromkeys(names):
            if name in (self.config.train_set, self.config.dev_set):
                role = "training" if name == self.config.train_set else "validation (--dev-set)"
                raise ConfigError(f"--unlabeled-set {name} is the {role} set; name another set of {self.data.root}")
            cuts = self.data.cuts(name).to_eager()  # read once: checked, then taken
            self.inputs[f"data:{name}"] = file_input(self.data.root / "manifests" / f"{name}_cuts.jsonl.gz")
            foreign = sorted(set(languages(cuts)) - set(langs))
            if foreign:
                raise DataError(
                    f"--unlabeled-set {name}: language(s) {', '.join(foreign)} have no teacher (teachers: "
                    f"{', '.join(langs)}, the languages of the training set); drop those utterances or prepare "
                    "the set without them"
                )
            if is_transcribed(cuts):
                raise DataError(
                    f"--unlabeled-set {name}: the set has transcripts, so it is not untranscribed audio (and dev or "
                    f"test audio must never train); learn from its transcripts with --train-set {name}, or prepare "
                    "its audio without the text file as a set of its own"
                )
            for cut in cuts:
                if cut.id in validation:
                    raise DataError(f"--unlabeled-set {name}: utterance {cut.id} is also in the validation set "
                                    f"{self.config.dev_set}: the student would learn the audio it is judged on; "
                                    "leave it out of one of them")
                if cut.id in seen:
                    raise DataError(f"--unlabeled-set {name}: utterance {cut.id} is also in another training set; "
                                    "give each utterance to one set only")
                seen.add(cut.id)
                out.append(cut)
            logger.info("untranscribed set %s: %d utterances, %.1f h", name, len(cuts),
                        sum(c.duration for c in cuts) / 3600)
        return CutSet.from_cuts(out)


def pseudo_labelled(root: Path, links: Path, teachers: dict[str, Teacher], cuts: CutSet, config: DistillConfig,
                    dist: DistInfo, normalize: bool) -> CutSet:
    """The training cuts with every teacher's (filtered) transcript attached."""

    def transcribe() -> dict:
        return {lang: teacher_transcripts(root, links, teacher, own_cuts(cuts, lang), dist.device, config.teacher_precision,
                                          2 * config.train.max_duration)
                for lang, teacher in sorted(teachers.items())}

    return with_pseudo_labels(cuts, on_main(dist, transcribe), config.kd, normalize)


def cache_all(root: Path, links: Path, teachers: dict[str, Teacher], cuts: CutSet, layers: LayerPlan,
              vocab_maps: dict[str, VocabMap], student_shift: float, config: DistillConfig, dist: DistInfo) -> CutSet:
    """The training cuts with every white-box teacher's targets attached (the main process computes them)."""

    def attach() -> list:
        out = []
        for lang, teacher in sorted(teachers.items()):
            own = own_cuts(cuts, lang)
            if not teacher.white_box:
                out.extend(own)  # taught by its transcripts only
                continue
            attached = cached_targets(root, links, teacher, own, layers.teacher[lang], config.kd.kl_weight > 0, dist.device,
                                      config.teacher_precision, 2 * config.train.max_duration,
                                      student_shift=student_shift, vocab=vocab_maps[lang])
            texts = {c.id: c.custom.get(KD_TEXT) for c in own if c.custom and c.custom.get(KD_TEXT)}
            out.extend(c.with_custom(KD_TEXT, texts[c.id]) if c.id in texts else c for c in attached)
        return out

    return CutSet.from_cuts(on_main(dist, attach))
