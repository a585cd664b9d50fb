"""Kaldi-compatible 80-dim fbank, computed by lhotse into a lilcom feature cache.

lhotse's ``CutSet.compute_and_store_features`` reports progress with tqdm only and, with
several jobs, pays a large worker start-up cost; this module drives lhotse's per-cut
extraction itself so that it can show a rich progress bar, name the audio file behind a
failure, and share one worker pool across chunks.
"""

from __future__ import annotations

import errno
import functools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter
from lhotse.utils import fastcopy

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.errors import DataError
from mlkd_cli.log import progress_bar

NUM_MEL_BINS = 80
CUTS_PER_CHUNK = 200
POWER = "power"  # custom field: mean square of a cut's samples


@functools.cache
def fbank_extractor() -> Fbank:
    """lhotse's default Kaldi-compatible fbank (80 bins, 25/10 ms, povey window, no dither).

    sherpa-onnx computes exactly these features, so exported models see the same input.
    """
    return Fbank(FbankConfig(num_filters=NUM_MEL_BINS))


def resample_to(cuts: CutSet, sampling_rate: int = SAMPLING_RATE) -> CutSet:
    """Resample (lazily, at load time) every cut whose audio is not at ``sampling_rate``."""
    return CutSet.from_cuts(
        cut if cut.sampling_rate == sampling_rate else cut.resample(sampling_rate) for cut in cuts
    )


def downmix(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    """The mean of all channels, as ``(1, samples)``: what `mlkd decode` computes its features from.

    lhotse's Fbank would use only the first channel. Passed to lhotse as an ``augment_fn``, which
    it applies to the loaded audio before extraction.
    """
    return samples.mean(axis=0, keepdims=True) if samples.shape[0] > 1 else samples


def _audio_source(cut) -> str:
    return " ".join(source.source for source in cut.recording.sources)


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # the output's disk, not the input audio


def _extract_chunk(cuts: list, storage_path: Path, power: bool = False) -> list:
    """Compute and store fbank for ``cuts`` into one lilcom archive; return the updated cuts
    (with ``power``: each with the mean square of its samples in ``custom["power"]``)."""
    extractor = fbank_extractor()
    done = []
    try:
        with LilcomChunkyWriter(storage_path) as writer:
            for cut in cuts:
                seen = {}

                def mono(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
                    samples = downmix(samples, sampling_rate)
                    if power:  # the samples are loaded here anyway: no second read
                        seen[POWER] = mean_square(samples)
                    return samples

                try:
                    cut = cut.compute_and_store_features(extractor, writer, augment_fn=mono)
                    done.append(cut.with_custom(POWER, seen[POWER]) if power else cut)
                except Exception as e:  # soundfile/ffmpeg raise many types for a bad file
                    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
                        raise
                    raise DataError(
                        f"{_audio_source(cut)}: cannot read audio of utterance {cut.id} ({type(e).__name__}: {e}); "
                        "replace the file or remove the utterance from the data dir"
                    ) from None
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise DataError(f"{storage_path}: cannot write features ({e.strerror}); the input audio is fine: free space "
                        "on that disk (or make it writable), or prepare into an OUT_DIR elsewhere") from None
    return done


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def compute_fbank(cuts: CutSet, storage_dir: Path, num_jobs: int = 1, description: str = "fbank",
                  power: bool = False) -> CutSet:
    """Attach fbank features to every cut, stored as lilcom archives in ``storage_dir``; with
    ``power``, also the mean square of its samples (``custom["power"]``, for mixing at an SNR).

    Cuts are processed in chunks of ``CUTS_PER_CHUNK``; with ``num_jobs > 1`` chunks run in
    a process pool. The returned cuts keep the input order.
    """
    storage_dir.mkdir(parents=True, exist_ok=True)
    chunks = _chunks(cuts)
    jobs = [(chunk, storage_dir / f"feats-{i}", power) for i, chunk in enumerate(chunks)]
    return CutSet.from_cuts(cut for done in _run_chunks(_extract_chunk, jobs, num_jobs, description) for cut in done)


def audio_power(cuts: CutSet, num_jobs: int = 1, description: str = "audio power") -> list[float]:
    """The mean square of each cut's (downmixed) samples, in the cuts' order."""
    jobs = [(chunk,) for chunk in _chunks(cuts)]
    return [p for done in _run_chunks(_power_chunk, jobs, num_jobs, description) for p in done]


def cut_power(cut) -> float:
    """The mean square of the cut's (downmixed) samples."""
    return mean_square(downmix(cut.load_audio(), cut.sampling_rate))


def mean_square(samples: np.ndarray) -> float:
    return float(np.mean(np.square(samples, dtype=np.float64)))


def _power_chunk(cuts: list) -> list[float]:
    return [cut_power(cut) for cut in cuts]


def _chunks(cuts: CutSet) -> list[list]:
    cut_list = list(cuts)
    return [cut_list[i : i + CUTS_PER_CHUNK] for i in range(0, len(cut_list), CUTS_PER_CHUNK)]


def _run_chunks(work, jobs: list[tuple], num_jobs: int, description: str) -> list[list]:
    """``work(*job)`` for every job (a chunk of cuts first), here or in a process pool, with a
    progress bar over the cuts; results in the jobs' order."""
    results: list[list] = []
    with progress_bar() as progress:
        task = progress.add_task(description, total=sum(len(job[0]) for job in jobs))
        if num_jobs <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(work(*job))
                progress.advance(task, len(job[0]))
        else:
            with ProcessPoolExecutor(num_jobs, initializer=_init_worker) as pool:
                futures = [pool.submit(work, *job) for job in jobs]
                for future in futures:
                    results.append(future.result())
                    progress.advance(task, len(results[-1]))
    return results


def relocated(cuts: CutSet, staging: Path, final: Path) -> CutSet:
    """``cuts`` whose feature archives were written under ``staging`` (a stage's staging dir),
    pointing to where they are published, ``final``."""
    final = final.resolve()
    return CutSet.from_cuts(
        fastcopy(cut, features=fastcopy(cut.features, storage_path=str(final / Path(cut.features.storage_path).relative_to(staging))))
        for cut in cuts)


def global_stats(cuts: CutSet, max_cuts: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation of the features of (up to ``max_cuts``) cuts."""
    stats = cuts.compute_global_feature_stats(max_cuts=max_cuts)
    return stats["norm_means"], stats["norm_stds"]
