"""Time alignment between a teacher's frame rate and the student's.

A wav2vec2-style teacher emits a frame every 20 ms, mlkd's student every 40 ms (10 ms fbank,
subsampled 4x); other teachers may emit every 30, 60 or 80 ms. The alignment chosen here:
each teacher frame belongs to the student frame whose 40 ms window holds the teacher frame's
centre, ``j = floor((k + 0.5) · shift_t / shift_s)``, and a student frame's target is the mean
of the teacher frames it holds (for 20 → 40 ms: frames 2j and 2j+1). Averaging, not picking
one frame, keeps everything the teacher said about that stretch of audio; for posteriors the
mean is taken over probabilities (the chance that the window emits each token), not over
log-probabilities, so a CTC spike in either half survives. A student frame that holds no
teacher frame (a slower teacher, or the last frame of an utterance the teacher's front end cut
shorter) takes the teacher frame nearest its centre. The result always has exactly the
student's frame count, so padding and the cache's length checks stay those of the student.
"""

from __future__ import annotations

import torch


def frame_index(num_frames: int, teacher_shift: float, student_shift: float) -> torch.Tensor:
    """Student frame of each teacher frame: the one holding its centre."""
    return ((torch.arange(num_frames, dtype=torch.float64) + 0.5) * teacher_shift / student_shift).floor().long()


def align_frames(x: torch.Tensor, lengths: torch.Tensor, teacher_shift: float, student_shift: float,
                 student_lengths: torch.Tensor) -> torch.Tensor:
    """(N, T_t, D) teacher frames → (N, T_s, D) at the student's rate (T_s = max student length).

    Frames past ``lengths`` (teacher) are ignored; frames past ``student_lengths`` are zero.
    """
    n, frames = x.shape[:2]
    out_frames = int(student_lengths.max()) if len(student_lengths) else 0
    if abs(teacher_shift - student_shift) < 1e-9:  # same rate: the frames already line up
        out = x[:, :out_frames]
        if out.size(1) < out_frames:
            out = torch.cat([out, out.new_zeros(n, out_frames - out.size(1), *x.shape[2:])], dim=1)
        return out * _mask(student_lengths, out_frames, out)
    device = x.device
    extra = [1] * (x.dim() - 2)  # trailing feature dims
    index = frame_index(frames, teacher_shift, student_shift).to(device)
    keep = index < out_frames
    valid = (torch.arange(frames, device=device)[None, :] < lengths.to(device)[:, None]).to(x.dtype)  # (N, T_t)
    sums = x.new_zeros(n, out_frames, *x.shape[2:]).index_add_(1, index[keep], (x * valid.reshape(n, frames, *extra))[:, keep])
    counts = x.new_zeros(n, out_frames).index_add_(1, index[keep], valid[:, keep]).reshape(n, out_frames, *extra)
    # student frames holding no teacher frame: the teacher frame nearest their centre
    centres = (torch.arange(out_frames, device=device, dtype=torch.float64) + 0.5) * student_shift / teacher_shift
    last = (lengths.to(device) - 1).clamp(min=0)[:, None]
    nearest = centres.floor().long()[None, :].clamp(max=last).reshape(n, out_frames, *extra)
    gathered = torch.gather(x, 1, nearest.expand(-1, -1, *x.shape[2:]))
    out = torch.where(counts > 0, sums / counts.clamp(min=1), gathered)
    return out * _mask(student_lengths.to(device), out_frames, out)

def _mask(lengths: torch.Tensor, frames: int, like: torch.Tensor) -> torch.Tensor:
    mask = torch.arange(frames, device=like.device)[None, :] < lengths[:, None].to(like.device)
    return mask.reshape(*mask.shape, *([1] * (like.dim() - 2))).to(like.dtype)
