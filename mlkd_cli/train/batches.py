"""Batches of cuts → padded features, token ids and languages, via lhotse samplers."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SpecAugment
from lhotse.dataset.collation import collate_matrices, collate_vectors
from lhotse.utils import LOG_EPSILON
from torch.utils.data import DataLoader, Dataset

from mlkd_cli.data.features import downmix
from mlkd_cli.data.tokenizer import Tokenizer
from mlkd_cli.experiment.config import SpecAugmentConfig
from mlkd_cli.train.augment import Augmenter, Heard

KD_TEXT = "kd_text"  # a teacher's transcript of the cut (sequence-level KD)


@dataclasses.dataclass
class Batch:
    features: torch.Tensor  # (N, T, F)
    feature_lens: torch.Tensor  # (N,)
    targets: list[Optional[list[int]]]  # None: an untranscribed cut
    texts: list[Optional[str]]
    langs: list[str]
    cut_ids: list[str]
    duration: float  # seconds of audio in the batch
    clean_features: Optional[torch.Tensor] = None  # before SpecAugment, when asked for
    extra: Any = None  # what the dataset's ``extra`` made of the cuts (has a ``to(device)``)
    audio: Optional[torch.Tensor] = None  # (N, S) waveforms, when asked for (teachers that read audio)
    audio_lens: Optional[torch.Tensor] = None
    pseudo_targets: Optional[list[Optional[list[int]]]] = None  # token ids of the cuts' ``kd_text``, if any

    def to(self, device: torch.device) -> "Batch":
        def move(x):
            return None if x is None else x.to(device)

        return dataclasses.replace(self, features=self.features.to(device), feature_lens=self.feature_lens.to(device),
                                   clean_features=move(self.clean_features), extra=move(self.extra),
                                   audio=move(self.audio), audio_lens=move(self.audio_lens))

    @property
    def unaugmented(self) -> torch.Tensor:
        return self.features if self.clean_features is None else self.clean_features


class AsrDataset(Dataset):
    """Map-style lhotse dataset: the sampler yields a CutSet, this turns it into a Batch.

    ``augment`` picks what training hears of each cut (a precomputed copy, noise and volume in
    the feature domain), ``keep_clean`` also returns the features before SpecAugment,
    ``with_audio`` the (augmented) waveforms; ``extra`` maps the heard cuts (the utterances or
    their copies, in batch order) to anything else a task needs, e.g. cached teacher targets.
    Cuts carrying a teacher transcript (``kd_text``) give ``pseudo_targets``.
    """

    def __init__(self, tokenizer: Tokenizer, spec_augment: SpecAugmentConfig | None = None,
                 keep_clean: bool = False, extra: Optional[Callable[[CutSet], Any]] = None,
                 with_audio: bool = False, augment: Augmenter | None = None):
        self.tokenizer = tokenizer
        self.keep_clean = keep_clean
        self.with_audio = with_audio
        self.extra = extra
        self.augment = augment
        self.spec_augment = None
        if spec_augment is not None and spec_augment.enabled:
            settings = {k: v for k, v in dataclasses.asdict(spec_augment).items() if k != "enabled"}
            self.spec_augment = SpecAugment(**settings)

    def __getitem__(self, item: CutSet | tuple[int, CutSet]) -> Batch:
        """The batch of a sampler's cuts, or of :class:`NumberedBatches`' (update, cuts)."""
        step, cuts = item if isinstance(item, tuple) else (0, item)
        cuts = cuts.sort_by_duration(ascending=False)
        heard = [Heard(cut) for cut in cuts]
        if self.augment is not None:
            heard = self.augment(cuts, step)
        features, lens = self.features(heard)
        clean = None
        if self.spec_augment is not None:
            clean = features.clone() if self.keep_clean else None
            segments = torch.stack([torch.arange(len(lens)), torch.zeros_like(lens), lens], dim=1)
            features = self.spec_augment(features, supervision_segments=segments)
        sups = [cut.supervisions[0] for cut in cuts]
        audio, audio_lens = self.audio(heard) if self.with_audio else (None, None)
        pseudo = [cut.custom.get(KD_TEXT) if cut.custom else None for cut in cuts]
        return Batch(
            features=features,
            feature_lens=lens,
            targets=[None if s.text is None else self.tokenizer.encode(s.text) for s in sups],
            texts=[s.text for s in sups],
            langs=[s.language for s in sups],
            cut_ids=[cut.id for cut in cuts],
            duration=sum(cut.duration for cut in cuts),
            clean_features=clean,
            extra=self.extra(CutSet.from_cuts(h.cut for h in heard)) if self.extra is not None else None,
            audio=audio,
            audio_lens=audio_lens,
            pseudo_targets=[None if t is None else self.tokenizer.encode(t) for t in pseudo] if any(pseudo) else None,
        )

    @staticmethod
    def features(heard: list[Heard]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded fbank of what training hears (see :meth:`Heard.features`)."""
        feats = [torch.from_numpy(h.features()) for h in heard]
        lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.int32)
        return collate_matrices(feats, padding_value=LOG_EPSILON), lens

    @staticmethod
    def audio(heard: list[Heard]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded mono waveforms of what training hears (for teachers that read audio)."""
        samples = [torch.from_numpy(downmix(h.audio(), h.cut.sampling_rate)[0]) for h in heard]
        return collate_vectors(samples, padding_value=0.0), torch.tensor([len(s) for s in samples], dtype=torch.int32)


def make_sampler(cuts: CutSet, max_duration: float, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
    """Duration-bucketed batches of about ``max_duration`` seconds; this rank's shard only."""
    with warnings.catch_warnings():  # eager cut sets are fine at the sizes mlkd trains on per language
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        return DynamicBucketingSampler(
            cuts,
            max_duration=max_duration,
            shuffle=shuffle,
            num_buckets=10 if cuts.is_lazy else max(1, min(10, len(cuts))),
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=False,
        )


class NumberedBatches:
    """A sampler's batches as (update, cuts), counted on from ``next_step``: what augmentation's
    schedule reads. DataLoader iterates its sampler in the main process even when workers make
    the batches, so the numbers are the updates that will train on them, resumed or not."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.next_step = 0

    def __iter__(self):
        for cuts in self.sampler:
            yield self.next_step, cuts
            self.next_step += 1


def make_loader(dataset: AsrDataset, sampler, num_workers: int = 0) -> DataLoader:
    # A private generator: each new iterator draws a seed from it, not from the global RNG,
    # so a resumed run's dropout and SpecAugment draws match an uninterrupted run's.
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0, generator=torch.Generator())


def consumed_sampler_state(sampler: DynamicBucketingSampler, consumed_batches: int) -> dict:
    """The sampler's state as if it had yielded only the ``consumed_batches`` of this epoch.

    DataLoader workers prefetch, so the sampler runs up to 2 × num_workers batches ahead of
    training and its own state_dict counts those too: a resumed run would skip them. lhotse
    restores a sampler by re-drawing ``kept_batches + discarded_batches`` batches of the
    current epoch, so that count is set to the batches training really consumed.
    """
    state = sampler.state_dict()  # a copy: diagnostics come from dataclasses.asdict
    diagnostics = state["diagnostics"]
    stats = diagnostics["stats_per_epoch"][diagnostics["current_epoch"]]
    stats["kept_batches"] = consumed_batches - stats["discarded_batches"]
    return state


def speed_perturbed(cuts: CutSet) -> CutSet:
    """The cuts plus 0.9x and 1.1x speed copies (their features are computed on the fly)."""
    audio_only = cuts.drop_features()  # lhotse cannot perturb features, only audio
    return cuts + audio_only.perturb_speed(0.9) + audio_only.perturb_speed(1.1)
