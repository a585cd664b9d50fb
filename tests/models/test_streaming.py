"""Streaming models: chunk masks, causal convolution, dynamic chunk training, chunk-by-chunk inference
equal to the chunked whole-utterance forward, the KD delay for streaming students."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mlkd_cli.config import from_dict
from mlkd_cli.distill.ensemble import LanguageTargets, RoutedTargets
from mlkd_cli.errors import ConfigError
from mlkd_cli.experiment.config import KdConfig
from mlkd_cli.models import CtcOutput, ModelConfig, build_model
from mlkd_cli.models.asr import prefix_means
from mlkd_cli.models.config import StreamingConfig
from mlkd_cli.models.conformer import chunk_mask
from mlkd_cli.models.streaming import ModelStream, StreamBatch, chunk_frames, use_chunk
from mlkd_cli.training_stages.distill import DistillTask, LayerPlan, plan_layers

STREAMING = StreamingConfig(chunk_ms=(160, 320), left_context_ms=320)
CONFIG = ModelConfig(d_model=32, num_layers=3, num_heads=2, ff_mult=2, conv_kernel=7, subsampling_channels=16,
                     vocab_size=11, streaming=STREAMING)


def streaming_model(languages: tuple[str, ...] = (), seed: int = 0):
    """A random streaming model with weights large enough that every part changes the output."""
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(CONFIG, languages=languages)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)
    return model


def features(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, frames, 80, generator=torch.Generator().manual_seed(seed))


def stream_in_pieces(model, feats: torch.Tensor, chunk: int, piece: int):
    stream = ModelStream(model, chunk)
    outputs = []
    for i in range(0, feats.size(1), piece):
        outputs += stream.accept(feats[0, i: i + piece].numpy())
    return outputs + stream.finish()


def test_chunk_mask_hand_computed():
    # 6 frames, chunks of 2, 2 frames of left context: frame 4 (chunk 2) sees 2..5.
    expected = torch.tensor([
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(chunk_mask(6, 2, 2), expected)
    assert torch.equal(chunk_mask(3, 2, 0), torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool))


def test_prefix_means_hand_computed():
    x = torch.tensor([[[1.0], [3.0], [5.0], [7.0], [9.0]]])
    # chunks of 2, 4 valid frames: frames 0-1 see mean(1, 3), frames 2-4 the mean of all 4 valid frames.
    got = prefix_means(x, torch.tensor([4]), 2)[0, :, 0].tolist()
    assert got == [2.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize("languages", [(), ("de", "en")])
@pytest.mark.parametrize("chunk_ms,piece", [(160, 1), (160, 37), (320, 50), (320, 400)])
def test_streaming_equals_the_chunked_whole_utterance_forward(languages, chunk_ms, piece):
    model = streaming_model(languages)
    feats = features(203)
    chunk = use_chunk(model, chunk_ms)
    with torch.inference_mode():
        whole = model(feats, torch.tensor([203]))
    outputs = stream_in_pieces(model, feats, chunk, piece)
    assert [len(o.log_probs) for o in outputs[:-1]] == [chunk] * (len(outputs) - 1)
    got = np.concatenate([o.log_probs for o in outputs])
    assert got.shape == tuple(whole.log_probs[0].shape)
    np.testing.assert_allclose(got, whole.log_probs[0].numpy(), atol=1e-5)
    if languages:  # the running decision after the last chunk is the whole utterance's
        np.testing.assert_allclose(outputs[-1].lid_logits, whole.lid_logits[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("languages", [(), ("de", "en")])
def test_streams_in_a_batch_equal_each_stream_alone(languages):
    """Four streams fed in step; two end together and finish in one padded batch (different
    last chunks), one finishes alone: each stream's chunks are its own."""
    model = streaming_model(languages)
    use_chunk(model, 160)
    feats = [features(n, seed=n) for n in (203, 120, 130, 175)]
    alone = [stream_in_pieces(model, f, 4, 37) for f in feats]
    batch = StreamBatch(model, 4, size=4)
    got = [[] for _ in feats]
    active = [0, 1, 2, 3]
    for start in range(0, 203, 37):
        ended = [j for j, i in enumerate(active) if start >= feats[i].size(1)]  # their audio is over
        if ended:
            for j, out in zip(ended, batch.remove(ended).finish()):
                got[active[j]] += out
            active = [i for j, i in enumerate(active) if j not in ended]
        for i, out in zip(active, batch.accept([feats[i][0, start: start + 37].numpy() for i in active])):
            got[i] += out
    for i, out in zip(active, batch.finish()):
        got[i] += out
    for mine, reference in zip(got, alone):
        assert len(mine) == len(reference)
        for a, b in zip(mine, reference):
            np.testing.assert_allclose(a.log_probs, b.log_probs, atol=1e-5)
            if languages:
                np.testing.assert_allclose(a.lid_logits, b.lid_logits, atol=1e-5)


def test_a_forced_language_conditions_every_chunk_on_it():
    model = streaming_model(("de", "en"))
    chunk = use_chunk(model, 160)
    feats = features(120)
    with torch.inference_mode():
        whole = model(feats, torch.tensor([120]), language=torch.tensor([1])).log_probs[0].numpy()
    stream = ModelStream(model, chunk, language=torch.tensor(1))
    got = np.concatenate([o.log_probs for o in stream.accept(feats[0].numpy()) + stream.finish()])
    np.testing.assert_allclose(got, whole, atol=1e-5)


def test_a_chunk_never_depends_on_later_audio():
    model = streaming_model(("de", "en"))
    use_chunk(model, 160)  # 4 output frames: frames 0-3 read features 0..18
    feats = features(120)
    changed = feats.clone()
    changed[:, 19:] += 5.0
    with torch.inference_mode():
        a, b = (model(f, torch.tensor([120])).log_probs[0] for f in (feats, changed))
    assert torch.allclose(a[:4], b[:4], atol=1e-6) and not torch.allclose(a[4:8], b[4:8], atol=1e-3)


def test_padding_does_not_change_a_streaming_utterance():
    model = streaming_model(("de", "en"))
    use_chunk(model, 160)
    long, short = features(203, seed=1), features(150, seed=2)
    batch = torch.full((2, 203, 80), -23.03)
    batch[0], batch[1, :150] = long[0], short[0]
    with torch.inference_mode():
        alone = model(short, torch.tensor([150]))
        padded = model(batch, torch.tensor([203, 150]))
    n = int(alone.lengths[0])
    assert torch.allclose(padded.log_probs[1, :n], alone.log_probs[0], atol=1e-5)
    assert torch.isfinite(padded.log_probs).all()


def test_training_draws_each_batch_s_chunk_from_the_config():
    model = streaming_model().train()
    torch.manual_seed(0)
    drawn = {model.encoder.current_chunk() for _ in range(60)}
    assert drawn == {4, 8}
    assert model.eval().encoder.current_chunk() == model.encoder.chunk


def test_chunk_sizes_and_non_streaming_models():
    model = streaming_model()
    assert chunk_frames(model, None) == 8 and chunk_frames(model, 640) == 16
    with pytest.raises(ConfigError, match="multiple of 40"):
        chunk_frames(model, 100)
    plain = build_model(dataclasses.replace(CONFIG, streaming=None))
    with pytest.raises(ConfigError, match="not a streaming model"):
        chunk_frames(plain, 320)


@pytest.mark.parametrize("data,message", [
    ({"chunk_ms": [150]}, "not a multiple of the 40 ms"),
    ({"chunk_ms": []}, "at least one chunk size"),
    ({"chunk_ms": [160, 480], "left_context_ms": 640}, r"whole number of chunks .* \[480\]"),
])
def test_streaming_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(StreamingConfig, data)


def test_a_streaming_config_reads_from_yaml_and_old_configs_have_none():
    assert from_dict(ModelConfig, {"streaming": {"chunk_ms": [320]}}).streaming == StreamingConfig(chunk_ms=(320,))
    assert from_dict(ModelConfig, {}).streaming is None


def test_kd_delay_pairs_the_student_s_later_frames_with_the_teacher_s():
    """A student whose frames are the teacher's two frames (80 ms) later: zero loss with delay_ms 80 only."""
    student = streaming_model()
    lengths = torch.tensor([12, 9])
    teacher = torch.randn(2, 12, 32)
    shifted = torch.cat([torch.zeros(2, 2, 32), teacher[:, :-2]], dim=1)
    log_probs = torch.randn(2, 12, 11).log_softmax(-1)
    shifted_lp = torch.cat([log_probs[:, :2], log_probs[:, :-2]], dim=1)
    out = CtcOutput(shifted_lp, lengths, shifted, [shifted] * 3, None)
    targets = RoutedTargets({"en": LanguageTargets(torch.tensor([0, 1]), lengths, [teacher], log_probs)})
    plan = LayerPlan([3], {"en": [3]}, [1.0])
    for delay, zero in ((80, True), (0, False)):
        task = DistillTask(student, {}, plan, KdConfig(kl_weight=1.0, delay_ms=delay), tokenizer=None)
        task.projections = torch.nn.ModuleDict({"en": torch.nn.ModuleList([torch.nn.Identity()])})
        _, terms = task.losses(out, targets, batch=None)
        assert (terms["kd"].item() < 1e-10 and terms["kl"].item() < 1e-6) == zero, (delay, terms)
    with pytest.raises(ConfigError, match="multiple of the 40 ms"):
        KdConfig(delay_ms=50)


def test_attention_kd_is_refused_for_a_streaming_student():
    kd = KdConfig(attention_weight=1.0, targets="on-the-fly")
    with pytest.raises(ConfigError, match="streaming student"):
        plan_layers(kd, CONFIG, {})
