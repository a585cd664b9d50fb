"""Time alignment of teacher frames to the student's, against hand-computed frames."""

import pytest
import torch

from mlkd_cli.teachers.frames import align_frames, frame_index


def column(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, 1)


def test_a_20_ms_teacher_averages_frame_pairs_for_a_40_ms_student():
    assert frame_index(7, 0.02, 0.04).tolist() == [0, 0, 1, 1, 2, 2, 3]
    x = column([1, 2, 3, 4, 5, 6, 7])
    out = align_frames(x, torch.tensor([7]), 0.02, 0.04, torch.tensor([4]))
    assert out[0, :, 0].tolist() == [1.5, 3.5, 5.5, 7.0]


def test_padding_frames_of_the_teacher_never_count_and_uncovered_student_frames_take_the_nearest():
    x = column([1, 2, 3, 4, 5, 99, 99])  # two padding frames
    out = align_frames(x, torch.tensor([5]), 0.02, 0.04, torch.tensor([4]))
    assert out[0, :, 0].tolist() == [1.5, 3.5, 5.0, 5.0]  # frame 3 holds only padding: nearest valid frame


def test_a_slower_teacher_is_repeated_and_student_padding_is_zero():
    x = column([1, 2, 3])
    out = align_frames(x, torch.tensor([3]), 0.08, 0.04, torch.tensor([6]))
    assert out[0, :, 0].tolist() == [1, 1, 2, 2, 3, 3]
    batch = torch.cat([column([1, 2, 3, 4]), column([5, 6, 0, 0])])
    out = align_frames(batch, torch.tensor([4, 2]), 0.02, 0.04, torch.tensor([2, 1]))
    assert out[:, :, 0].tolist() == [[1.5, 3.5], [5.5, 0.0]]


def test_the_same_rate_keeps_frames_and_features_of_any_shape():
    x = torch.randn(2, 5, 3, 4)
    out = align_frames(x, torch.tensor([5, 3]), 0.04, 0.04, torch.tensor([5, 3]))
    assert torch.equal(out[0], x[0]) and torch.equal(out[1, :3], x[1, :3]) and not out[1, 3:].any()
    probs = torch.softmax(torch.randn(1, 6, 5), -1)  # posteriors stay distributions
    pooled = align_frames(probs, torch.tensor([6]), 0.02, 0.04, torch.tensor([3]))
    assert pooled.sum(-1).squeeze().tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert torch.allclose(pooled[0, 1], (probs[0, 2] + probs[0, 3]) / 2)


def test_a_teacher_frame_belongs_to_the_student_frame_holding_its_centre():
    """30 and 60 ms teachers, where the centre and the start of a frame fall in different 40 ms
    windows (at 20 ms both rules agree): centres at 15, 45, 75, 105 ms and 30, 90, 150 ms."""
    assert frame_index(4, 0.03, 0.04).tolist() == [0, 1, 1, 2]
    assert frame_index(3, 0.06, 0.04).tolist() == [0, 2, 3]
    out = align_frames(column([1, 2, 3, 4]), torch.tensor([4]), 0.03, 0.04, torch.tensor([3]))
    assert out[0, :, 0].tolist() == [1.0, 2.5, 4.0]
