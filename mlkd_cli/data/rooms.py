"""Simulated room impulse responses: shoebox rooms by the image-source method (pyroomacoustics).

lhotse's own room simulator (FastRandomRIRGenerator) needs torchaudio, which mlkd does not
install; pyroomacoustics is a maintained image-source implementation that needs nothing else.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import Recording
from lhotse.cut import Cut

from mlkd_cli.contracts import SAMPLING_RATE
from mlkd_cli.stage import Stage, new_record

DIMENSIONS = ((3.0, 3.0, 2.4), (10.0, 8.0, 4.0))  # smallest and largest room, metres
RT60 = (0.2, 0.9)  # seconds
MAX_ORDER = 20  # reflections per wall path: bounds the time per room (about 10 ms)
MIN_DISTANCE = 0.5  # metres from any wall, for the source and the microphone


def simulate_rirs(count: int, seed: int, rt60: tuple[float, float] = RT60) -> list[np.ndarray]:
    """``count`` float32 impulse responses at 16 kHz of random rooms, sources and microphones."""
    import pyroomacoustics as pra  # a second or so to import: only when rooms are simulated

    rng = np.random.default_rng(seed)
    rirs = []
    for _ in range(count):
        dims = rng.uniform(*DIMENSIONS)
        absorption, order = pra.inverse_sabine(rng.uniform(*rt60), dims)
        room = pra.ShoeBox(dims, fs=SAMPLING_RATE, materials=pra.Material(absorption), max_order=min(order, MAX_ORDER))
        room.add_source(rng.uniform(MIN_DISTANCE, dims - MIN_DISTANCE))
        room.add_microphone(rng.uniform(MIN_DISTANCE, dims - MIN_DISTANCE))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)
        rirs.append(rir / np.abs(rir).max())
    return rirs


def room_cuts(count: int, seed: int, prefix: str = "room") -> list[Cut]:
    """The impulse responses of :func:`simulate_rirs` as in-memory lhotse cuts (for ``reverb_rir``)."""
    cuts = []
    for i, rir in enumerate(simulate_rirs(count, seed)):
        buffer = io.BytesIO()
        sf.write(buffer, rir, SAMPLING_RATE, format="WAV", subtype="FLOAT")
        cuts.append(Recording.from_bytes(buffer.getvalue(), recording_id=f"{prefix}-{i:03d}").to_cut())
    return cuts


def room_files(out_dir: Path, count: int, seed: int) -> list[Cut]:
    """The impulse responses of :func:`simulate_rirs` written once as WAV files in ``out_dir``, as cuts:
    manifests that reference them stay small, and a second caller reads them instead."""
    record = new_record("simulated-rooms", {}, {"count": count, "seed": seed})
    with Stage(out_dir, record, on_change="redo", shared=True).run() as staging:
        if staging is not None:
            for i, rir in enumerate(simulate_rirs(count, seed)):
                sf.write(staging / f"room-{i:03d}.wav", rir, SAMPLING_RATE, subtype="FLOAT")
    return [Recording.from_file(out_dir / f"room-{i:03d}.wav").to_cut() for i in range(count)]
