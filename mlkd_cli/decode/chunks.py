"""Long recordings in overlapping windows, and their posteriors stitched back without seams.

Windows start every ``hop`` seconds (a multiple of the model's output frame), so output frame
k of window i is absolute frame ``i·hop_frames + k``. Each window keeps only the frames
nearest its own centre: the first from its start, the others from half the overlap, all
but the last up to half the overlap into the next window. The kept ranges tile the
recording exactly, so every search method runs once over one seamless posterior sequence
and no word at a window edge is emitted twice. A tail shorter than :data:`MIN_DURATION`
(possible with little or no overlap) is not a window of its own: the window before it
runs to the end instead.
"""

from __future__ import annotations

import dataclasses

OUTPUT_FRAME = 0.04  # seconds per encoder output frame (10 ms features, subsampling 4)
# The least audio that gives one output frame: the front end needs 7 fbank frames, and lhotse's
# fbank (10 ms shift, edges not snipped) makes (samples + 80) // 160 frames at 16 kHz, so 1040
# samples. Less audio either crashes the fbank or yields no frame to search.
MIN_DURATION = 0.065


@dataclasses.dataclass(frozen=True)
class Window:
    index: int  # position in the recording
    start: float  # seconds
    duration: float
    keep_from: int  # first kept output frame (local)
    keep_to: int | None  # end of kept frames (local, exclusive); None = to the end


def plan_windows(duration: float, chunk: float, overlap: float) -> list[Window]:
    """One window for audio up to ``chunk`` seconds, else overlapping windows covering it.

    Windows last ``chunk`` seconds, except the last one, which may run up to
    ``MIN_DURATION`` longer rather than leave a shorter tail.
    """
    if duration <= chunk:
        return [Window(0, 0.0, duration, 0, None)]
    hop_frames = round((chunk - overlap) / OUTPUT_FRAME)
    half = round(overlap / 2 / OUTPUT_FRAME)
    hop = hop_frames * OUTPUT_FRAME
    windows = []
    start, i = 0.0, 0
    while True:
        last = start + chunk >= duration or duration - (start + hop) < MIN_DURATION
        windows.append(Window(i, start, duration - start if last else chunk, 0 if i == 0 else half,
                              None if last else hop_frames + half))
        if last:
            return windows
        i += 1
        start = i * hop
