"""The corpus's splits, default languages and sizes (cheap to import: `mlkd make-corpus`'s options show them)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlkd_cli.errors import ConfigError

DEFAULT_LANGS = ("en", "de", "es", "it", "ru")
DEFAULT_UNSEEN = ("pl", "cs")  # languages spoken only in dev_unseen/test_unseen
SPLITS = ("train", "dev", "test")  # transcribed, in the trained languages
UNLABELED = "unlabeled"  # the untranscribed pool, in the trained languages
TEACHER = "teacher_train"  # the teachers' own training data, in the trained languages
UNSEEN_SPLITS = ("dev_unseen", "test_unseen")
NOISY = "test_noisy"  # the test set in simulated rooms with noise types and SNRs training never has
ENGINE = "test_engine"  # the test sentences spoken by an engine held out of the language's training data


@dataclass(frozen=True)
class CorpusSize:
    """Audio per language in each split (dev_unseen and test_unseen: unseen_minutes each)."""

    train_hours: float
    dev_minutes: float
    test_minutes: float
    unlabeled_hours: float = 0.0  # the untranscribed pool; 0: none
    unseen_minutes: float = 0.0  # per unseen language, in dev_unseen and in test_unseen; 0: none
    teacher_hours: float = 0.0  # the teachers' own training set; 0: none (teachers learn from train)
    name: str = "custom"

    def __post_init__(self) -> None:
        for name in ("train_hours", "dev_minutes", "test_minutes"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("unlabeled_hours", "unseen_minutes", "teacher_hours"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")

    def seconds(self, split: str) -> float:
        return {"train": self.train_hours * 3600, "dev": self.dev_minutes * 60, "test": self.test_minutes * 60,
                UNLABELED: self.unlabeled_hours * 3600, TEACHER: self.teacher_hours * 3600,
                "dev_unseen": self.unseen_minutes * 60,
                "test_unseen": self.unseen_minutes * 60, ENGINE: self.test_minutes * 60}[split]


SIZES = {
    "tiny": CorpusSize(train_hours=45 / 3600, dev_minutes=0.25, test_minutes=0.25, unlabeled_hours=20 / 3600,
                       unseen_minutes=0.15, teacher_hours=60 / 3600, name="tiny"),
    # ~12/4/4 utts, ~6 untranscribed, ~3 per unseen split, ~17 for the teachers
    "demo": CorpusSize(train_hours=0.25, dev_minutes=8.0, test_minutes=8.0, unlabeled_hours=2.0, unseen_minutes=4.0,
                       teacher_hours=3.0, name="demo"),
    "demo-same-hour": CorpusSize(train_hours=1.0, dev_minutes=8.0, test_minutes=8.0, unlabeled_hours=2.0,
                                 unseen_minutes=4.0, name="demo-same-hour"),
}


def corpus_size(name: str, train_hours: float | None = None, dev_minutes: float | None = None,
                test_minutes: float | None = None, unlabeled_hours: float | None = None,
                unseen_minutes: float | None = None, teacher_hours: float | None = None) -> CorpusSize:
    """A named size, with any of its amounts replaced."""
    if name not in SIZES:
        raise ConfigError(f"unknown corpus size {name!r}; choose from: {' '.join(SIZES)}")
    overrides = {"train_hours": train_hours, "dev_minutes": dev_minutes, "test_minutes": test_minutes,
                 "unlabeled_hours": unlabeled_hours, "unseen_minutes": unseen_minutes, "teacher_hours": teacher_hours}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(SIZES[name], name="custom", **overrides) if overrides else SIZES[name]
