"""`mlkd prepare`: sources → validated manifests, fbank cache and tokenizer in one data dir.

Layout of a prepared data dir::

  config.yaml  stage.json  log/prepare.log
  manifests/<set>_{recordings,supervisions,cuts}.jsonl.gz   (cuts carry the features)
  fbank/<set>/feats-*.lca                                 (lilcom feature archives)
  lang_<type><size>/                                       (see mlkd_cli.data.tokenizer)

Everything is written into a staging dir and published as one set by the stage protocol
(mlkd_cli.stage), so a failed or killed run leaves the previous preparation intact; other
entries of OUT_DIR (e.g. the corpus in data/corpus) are never touched.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path

from lhotse import CutSet
from lhotse.utils import fastcopy

from mlkd_cli.config import dump_yaml, load_yaml, to_dict
from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.data.features import compute_fbank, resample_to
from mlkd_cli.data.manifests import Source, audio_paths, has_transcript, is_transcribed, load_source
from mlkd_cli.data.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from mlkd_cli.errors import DataError, Problems
from mlkd_cli.fsutil import atomic_path, path_digest, stat_digest
from mlkd_cli.log import log_to_file, real_time_factor
from mlkd_cli.stage import Stage, StageRecord, new_record

logger = logging.getLogger("mlkd")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    train_set: str = "train"
    tokenizer: TokenizerConfig = TokenizerConfig()
    allow_mixed_rates: bool = True  # several rates in one directory: resampled to 16 kHz (False: refused)
    normalize_text: bool = False  # lower case, no punctuation (for CommonVoice-style transcripts)


def group_sources(args: list[str]) -> dict[str, list[Source]]:
    sets: dict[str, list[Source]] = defaultdict(list)
    for arg in args:
        source = Source.parse(arg)
        sets[source.name].append(source)
    return dict(sets)


def load_sets(sets: dict[str, list[Source]], allow_mixed_rates: bool, normalize_text: bool = False) -> dict[str, CutSet]:
    """Validate and load every source; sources of one set are combined (ids must not clash). The
    problems of every source are reported in one run."""
    loaded, problems = {}, Problems()
    for name, sources in sets.items():
        cuts: dict[str, object] = {}
        for source in sources:
            try:
                source_cuts = load_source(source, allow_mixed_rates, normalize_text)
            except DataError as e:
                problems.add(str(e))
                continue
            for cut in source_cuts:
                if cut.id in cuts:
                    problems.add(f"{source.path}: utterance id {cut.id} also appears in another source of set {name!r}")
                    break
                cuts[cut.id] = cut
        try:
            _check_all_or_none_transcribed(name, sources, cuts)
        except DataError as e:
            problems.add(str(e))
        if problems.messages:
            continue  # the sets loaded so far are not used
        loaded[name] = CutSet.from_cuts(cuts[k] for k in sorted(cuts))
        logger.info("set %s: %d utterances, %.1f min, languages %s%s", name, len(loaded[name]),
                    sum(c.duration for c in loaded[name]) / 60, ", ".join(languages(loaded[name])),
                    "" if is_transcribed(loaded[name]) else ", untranscribed")
        _report_resampling(name, loaded[name])
    problems.raise_if_any()
    return loaded


def _report_resampling(name: str, cuts: CutSet) -> None:
    rates = Counter(cut.sampling_rate for cut in cuts if cut.sampling_rate != SAMPLING_RATE)
    if rates:
        logger.info("set %s: recordings at %s are resampled to %d Hz", name,
                    ", ".join(f"{rate} Hz ({n})" for rate, n in sorted(rates.items())), SAMPLING_RATE)


def _check_all_or_none_transcribed(name: str, sources: list[Source], cuts: dict) -> None:
    without = [cut_id for cut_id, cut in cuts.items() if not has_transcript(cut)]
    if without and len(without) < len(cuts):
        raise DataError(
            f"set {name!r} mixes transcribed and untranscribed sources ({', '.join(str(s.path) for s in sources)}; "
            f"{len(without)} of {len(cuts)} utterances without text, e.g. {without[0]}); give the untranscribed "
            "audio a set name of its own (NAME=PATH)"
        )


def languages(cuts: CutSet) -> list[str]:
    return sorted({cut.supervisions[0].language for cut in cuts})


def texts_by_language(cuts: CutSet) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = defaultdict(list)
    for cut in cuts:
        texts[cut.supervisions[0].language].append(cut.supervisions[0].text)
    return dict(texts)


def stage_record(sets: dict[str, list[Source]], cuts: dict[str, CutSet], config: PrepareConfig, argv: list[str]) -> StageRecord:
    inputs = {
        f"{name}:{source.path}": {"path": str(source.path.resolve()), "digest": path_digest(source.path)}
        for name, sources in sets.items()
        for source in sources
    }
    all_audio = [p for c in cuts.values() for p in audio_paths(c)]
    inputs["audio"] = {"path": f"{len(all_audio)} files", "digest": stat_digest(all_audio)}
    return new_record("prepare", inputs, to_dict(config), argv)


def prepare(source_args: list[str], out_dir: Path, config: PrepareConfig, num_jobs: int = 1,
            force: bool = False, argv: list[str] | None = None) -> bool:
    """Run the whole preparation; return False when ``out_dir`` was already up to date."""
    sets = group_sources(source_args)
    if config.train_set not in sets:
        raise DataError(
            f"no source for the training set {config.train_set!r} (sets given: {', '.join(sets)}); "
            f"name one with {config.train_set}=PATH or pass --train-set"
        )
    cuts = load_sets(sets, config.allow_mixed_rates, config.normalize_text)
    if not is_transcribed(cuts[config.train_set]):
        raise DataError(
            f"the training set {config.train_set!r} has no transcripts; the tokenizer and every model need "
            "them: name a transcribed set as the training set, and give untranscribed audio to "
            "`mlkd distill --unlabeled-set NAME`"
        )
    _check_languages(cuts, config.train_set)
    out_dir = Path(out_dir)
    with Stage(out_dir, stage_record(sets, cuts, config, argv or []), force=force).run() as staging, \
            log_to_file(out_dir / "log" / "prepare.log"):
        if staging is None:
            return False
        lang_dir = staging / config.tokenizer.dir_name
        train_tokenizer(texts_by_language(cuts[config.train_set]), lang_dir, config.tokenizer)
        _report_unknown_tokens(Tokenizer(lang_dir), cuts)
        for name, set_cuts in cuts.items():
            with_feats = _fbank_set(name, set_cuts, staging.resolve() / "fbank" / name, num_jobs)
            final_dir = out_dir.resolve() / "fbank" / name
            write_manifests(with_feats.map(functools.partial(_moved_features, feats_dir=final_dir)),
                            staging / "manifests", name)
        (staging / "config.yaml").write_text(dump_yaml(config), encoding="utf-8")
        logger.info("prepared %s: sets %s, tokenizer %s", out_dir, ", ".join(cuts), lang_dir.name)
    return True


def _moved_features(cut, feats_dir: Path):
    """``cut`` with its feature archive in ``feats_dir`` (where the staged one is published)."""
    storage = feats_dir / Path(cut.features.storage_path).name
    return fastcopy(cut, features=fastcopy(cut.features, storage_path=str(storage)))


def _fbank_set(name: str, cuts: CutSet, feats_dir: Path, num_jobs: int) -> CutSet:
    start = time.perf_counter()
    with_feats = compute_fbank(resample_to(cuts), feats_dir, num_jobs, description=f"fbank {name}")
    seconds, audio = time.perf_counter() - start, sum(c.duration for c in cuts)
    logger.info("fbank %s: %.1f s of audio in %.1f s (%s, %d jobs)", name, audio, seconds,
                real_time_factor(audio, seconds), num_jobs)
    return with_feats


def _check_languages(cuts: dict[str, CutSet], train_set: str) -> None:
    """Untranscribed sets must be in trained languages; an evaluation set in others is for
    language-ID rejection (say so, as it may be a mistake)."""
    train_langs = set(languages(cuts[train_set]))
    for name, set_cuts in cuts.items():
        unknown = sorted(set(languages(set_cuts)) - train_langs)
        if unknown and not is_transcribed(set_cuts):
            raise DataError(
                f"untranscribed set {name!r} has language(s) {', '.join(unknown)} that the training set "
                f"{train_set!r} lacks; no teacher can be trained for them: add transcribed training data "
                "for them or leave them out"
            )
        if unknown:
            logger.warning("set %s has language(s) %s that the training set %s lacks: models can only reject "
                           "them as unknown (scored by `mlkd score` as unseen languages)", name,
                           ", ".join(unknown), train_set)


def write_manifests(cuts: CutSet, manifest_dir: Path, name: str) -> None:
    recordings, supervisions, _ = cuts.decompose()
    for kind, manifest in (("recordings", recordings), ("supervisions", supervisions), ("cuts", cuts)):
        with atomic_path(manifest_dir / f"{name}_{kind}.jsonl.gz") as tmp:
            manifest.to_file(tmp)


def _report_unknown_tokens(tokenizer: Tokenizer, cuts: dict[str, CutSet]) -> None:
    for name, set_cuts in cuts.items():
        ids = [i for cut in set_cuts if has_transcript(cut) for i in tokenizer.encode(cut.supervisions[0].text)]
        ratio = Tokenizer.unk_ratio(ids)
        if ratio > 0:
            logger.warning("set %s: %.2f%% of tokens are <unk> (characters unseen in training text)", name, 100 * ratio)


@dataclasses.dataclass
class PreparedData:
    """Read access to a data dir made by `mlkd prepare`; errors say which command creates it."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (self.root / "config.yaml").is_file():
            raise DataError(f"{self.root}: not a prepared data dir (no config.yaml); create it with `mlkd prepare SRC... {self.root}`")
        self.config = load_yaml(PrepareConfig, self.root / "config.yaml")
        self._signature: dict | None = None

    def cuts(self, name: str) -> CutSet:
        path = self.root / "manifests" / f"{name}_cuts.jsonl.gz"
        if not path.is_file():
            known = sorted(p.name.removesuffix("_cuts.jsonl.gz") for p in (self.root / "manifests").glob("*_cuts.jsonl.gz"))
            raise DataError(f"{path}: no set {name!r} in {self.root} (sets: {', '.join(known)}); add it with `mlkd prepare`")
        return CutSet.from_file(path)

    @property
    def lang_dir(self) -> Path:
        return self.root / self.config.tokenizer.dir_name

    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.lang_dir)

    def num_features(self) -> int:
        """Feature dimension of the prepared sets (from the first cut of the training set)."""
        return self.feature_signature()["num_features"]

    def feature_signature(self) -> dict:
        """What a model trained on these features depends on (from the first training cut; read once)."""
        if self._signature is None:
            features = next(iter(self.cuts(self.config.train_set))).features
            self._signature = {"type": features.type, "num_features": features.num_features,
                               "frame_shift": features.frame_shift, "sampling_rate": features.sampling_rate}
        return dict(self._signature)

