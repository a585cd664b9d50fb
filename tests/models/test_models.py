"""Conformer-CTC: shapes, padding invariance, attention maps, configs, checkpoints, CTC helpers."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from mlkd_cli.config import load_yaml
from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.models import (
    ModelConfig,
    build_model,
    ctc_loss,
    greedy_decode,
    load_checkpoint_file,
    load_model,
    load_model_state,
    num_parameters,
    save_model,
)

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "model"
TINY = ModelConfig(d_model=32, num_layers=2, num_heads=2, ff_mult=2, conv_kernel=7, subsampling_channels=16, vocab_size=11)
PAD = -23.0259  # what sherpa-onnx pads batches with


def tiny_model(config: ModelConfig = TINY, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config).eval()


def batch(lengths: list[int], feature_dim: int = 80, pad: float = PAD, seed: int = 0):
    """Random features padded with ``pad`` to the longest; the same seed gives the same utterances."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((len(lengths), max(lengths), feature_dim), pad)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, feature_dim, generator=g)
    return x, torch.tensor(lengths)


def test_shapes_and_lengths_for_odd_lengths():
    model = tiny_model()
    lengths = [7, 8, 13, 101, 5]
    x, lens = batch(lengths)
    with torch.no_grad():
        out = model(x, lens)
        alone = [model(x[i : i + 1, :n], lens[i : i + 1]).log_probs.size(1) for i, n in enumerate(lengths) if n >= 7]
    assert out.lengths.tolist() == [1, 1, 2, 24, 0]
    assert alone == [1, 1, 2, 24]  # the convs yield exactly the computed number of frames
    assert out.log_probs.shape == (5, 24, TINY.vocab_size)
    assert out.output.shape == (5, 24, TINY.d_model)
    assert len(out.hidden) == TINY.num_layers and all(h.shape == (5, 24, 32) for h in out.hidden)
    assert out.attention is None
    assert torch.isfinite(out.log_probs).all()  # the 0-frame utterance included
    assert torch.allclose(out.log_probs.exp().sum(-1), torch.ones(5, 24), atol=1e-5)


def test_batch_shorter_than_one_output_frame():
    with torch.no_grad():
        out = tiny_model()(*batch([3, 5]))
    assert out.lengths.tolist() == [0, 0] and torch.isfinite(out.log_probs).all()
    assert greedy_decode(out.log_probs, out.lengths) == [[], []]


def test_attention_maps_are_masked_distributions():
    model = tiny_model()
    x, lens = batch([40, 101])
    with torch.no_grad():
        explicit = model(x, lens, return_attention=True)
        fast = model(x, lens)
    assert len(explicit.attention) == TINY.num_layers
    valid = explicit.lengths[0].item()  # 9 of 24 frames
    for weights in explicit.attention:
        assert weights.shape == (2, TINY.num_heads, 24, 24)
        assert torch.allclose(weights.sum(-1), torch.ones(2, TINY.num_heads, 24), atol=1e-5)
        assert (weights[0, :, :, valid:] == 0).all()
    for a, b in zip(explicit.hidden, fast.hidden):
        assert torch.allclose(a[0, :valid], b[0, :valid], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_attention_under_cpu_bf16_autocast_is_computed_in_fp32():
    """torch's bf16 attention kernel is slow on a CPU: ``attend`` computes fp32 attention of the
    bf16 inputs, returns bf16 and passes gradients to all three."""
    from mlkd_cli.models.conformer import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 8, generator=g).to(torch.bfloat16).requires_grad_() for _ in range(3))
    mask = (torch.arange(9) < torch.tensor([9, 5])[:, None])[:, None, None, :]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attend(q, k, v, mask)
    expected = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, expected.to(torch.bfloat16))
    y.float().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


LANGS = ("de", "en", "ru")
ADAPTIVE = dataclasses.replace(TINY, num_layers=3, languages=LANGS)


def randomize_language_embedding(model) -> None:
    with torch.no_grad():
        model.language_embedding.weight.normal_()


@pytest.mark.parametrize("config", [dataclasses.replace(TINY, num_layers=3), ADAPTIVE], ids=["plain", "adaptive"])
@pytest.mark.parametrize("pad", [0.0, PAD, 1e4])
def test_padding_never_changes_valid_frames(pad, config):
    model = tiny_model(config)
    if config.languages:
        randomize_language_embedding(model)
    x, lens = batch([53, 120], pad=pad)
    with torch.no_grad():
        alone = model(x[:1, :53], lens[:1])
        padded = model(x, lens)
    n = alone.lengths.item()
    assert n == padded.lengths[0].item() == 12 and padded.log_probs.size(1) == 29
    for a, b in zip([alone.log_probs, *alone.hidden], [padded.log_probs, *padded.hidden]):
        assert torch.allclose(a[0], b[0, :n], atol=1e-5)
    if config.languages:
        assert torch.allclose(alone.lid_logits[0], padded.lid_logits[0], atol=1e-5)


def test_language_adaptive_model_shapes_and_split():
    model = tiny_model(ADAPTIVE)
    assert ADAPTIVE.conditioned_layer == 1 and dataclasses.replace(ADAPTIVE, lid_layer=3).conditioned_layer == 3
    x, lens = batch([60, 90])
    with torch.no_grad():
        out = model(x, lens, return_attention=True)
    assert out.lid_logits.shape == (2, 3) and out.lid_logits.dtype == torch.float32
    assert len(out.hidden) == len(out.attention) == 3
    assert out.log_probs.shape == (2, 21, 11)


def test_zero_language_embedding_leaves_a_plain_model_unchanged():
    """Fine-tuning starts from a distilled plain model: its outputs must not move at step 0."""
    plain = tiny_model(dataclasses.replace(TINY, num_layers=3))
    adaptive = tiny_model(ADAPTIVE, seed=1)
    state = adaptive.state_dict()
    state.update(plain.state_dict())
    adaptive.load_state_dict(state)
    x, lens = batch([70, 44])
    with torch.no_grad():
        assert torch.allclose(plain(x, lens).log_probs, adaptive(x, lens).log_probs, atol=1e-6)


def test_language_input_conditions_the_upper_layers_only():
    model = tiny_model(ADAPTIVE)
    randomize_language_embedding(model)
    x, lens = batch([60, 60])
    with torch.no_grad():
        as_de = model(x, lens, torch.tensor([0, 0]))
        as_ru = model(x, lens, torch.tensor([2, 2]))
        soft = model(x, lens, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
        predicted = model(x, lens)
        mixed = model(x, lens, as_de.lid_logits.softmax(-1))
    assert torch.allclose(as_de.hidden[0], as_ru.hidden[0])  # below the split: unconditioned
    assert not torch.allclose(as_de.output, as_ru.output)
    assert torch.allclose(as_ru.output, soft.output, atol=1e-6)  # one-hot weights = index
    assert torch.allclose(predicted.output, mixed.output, atol=1e-6)  # default = predicted posteriors


def test_plain_model_rejects_a_language_input():
    with pytest.raises(ConfigError, match="no language input"):
        tiny_model()(*batch([40]), torch.tensor([0]))


@pytest.mark.parametrize(
    "changes, phrase",
    [
        ({"d_model": 30, "num_heads": 4}, "divisible by num_heads"),
        ({"d_model": 36, "num_heads": 4}, "must be even"),
        ({"conv_kernel": 8}, "conv_kernel 8 must be odd"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ({"subsampling": 6}, "subsampling 6 is not supported"),
        ({"vocab_size": 1}, "vocab_size 1 is invalid"),
        ({"num_layers": 0}, "num_layers must be at least 1"),
        ({"d_model": "144"}, "d_model must be an integer"),
        ({"subsampling_channels": 30}, "multiple of 4"),
        ({"feature_dim": 5}, "feature_dim 5 is too small"),
        ({"languages": ("en", "en")}, "distinct language codes"),
        ({"lid_layer": 7}, "lid_layer must be 0"),
    ],
)
def test_bad_config_values_are_config_errors(changes, phrase):
    with pytest.raises(ConfigError, match=phrase):
        ModelConfig(**changes)


def test_building_needs_a_vocabulary_size():
    with pytest.raises(ConfigError, match="vocab_size is 0: set it from the tokenizer"):
        build_model(ModelConfig())


def test_presets_load(tmp_path):
    configs = {name: load_yaml(ModelConfig, PRESETS / f"{name}.yaml") for name in ("tiny", "demo", "full")}
    assert all(c.vocab_size == 0 for c in configs.values())
    sizes = {name: num_parameters(build_model(c.with_vocab(40))) for name, c in configs.items()}
    assert sizes["tiny"] < 100_000
    assert 2.5e6 <= sizes["demo"] <= 4e6
    assert sizes["full"] > 10e6
    (tmp_path / "bad.yaml").write_text((PRESETS / "tiny.yaml").read_text() + "num_head: 3\n")
    with pytest.raises(ConfigError, match="unknown key.*num_head"):
        load_yaml(ModelConfig, tmp_path / "bad.yaml")


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    save_model(tmp_path / "final.pt", model, TINY)
    assert load_checkpoint_file(tmp_path / "final.pt")["config"]["vocab_size"] == TINY.vocab_size
    loaded, config = load_model(tmp_path / "final.pt")
    assert config == TINY
    x, lens = batch([77, 50])
    with torch.no_grad():
        assert torch.equal(model(x, lens).log_probs, loaded.eval()(x, lens).log_probs)
    assert [p.name for p in tmp_path.iterdir()] == ["final.pt"]  # no temp file left


def test_loading_into_another_config_names_the_keys(tmp_path):
    state = tiny_model().state_dict()
    with pytest.raises(ConfigError, match=r"ckpt: the checkpoint does not fit the model config; .*missing key\(s\): encoder\.layers\.2\."):
        load_model_state(tiny_model(dataclasses.replace(TINY, num_layers=3)), state, "ckpt")
    with pytest.raises(ConfigError, match=r"mismatched \(checkpoint vs model\) key\(s\): ctc_head\.bias \(11,\) vs \(12,\)"):
        load_model_state(tiny_model(TINY.with_vocab(12)), state, "ckpt")
    with pytest.raises(ConfigError, match=r"1 unexpected key\(s\): extra"):
        load_model_state(tiny_model(), {**state, "extra": torch.zeros(1)}, "ckpt")


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="none.pt: checkpoint not found"):
        load_checkpoint_file(tmp_path / "none.pt")
    save_model(tmp_path / "good.pt", tiny_model(), TINY)
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for name in ("cut.pt", "junk.pt"):
        with pytest.raises(DataError, match=f"{name}: not a readable checkpoint"):
            load_checkpoint_file(tmp_path / name)
    torch.save({"model": {}}, tmp_path / "noconf.pt")
    with pytest.raises(DataError, match="noconf.pt: not a model file \\(no config entry\\)"):
        load_model(tmp_path / "noconf.pt")


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    best = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3, 3], [0, 2, 2, 2, 0, 0, 0, 0, 4, 4]])
    log_probs = torch.nn.functional.one_hot(best, 5).float().log_softmax(-1)
    assert greedy_decode(log_probs, torch.tensor([10, 7])) == [[1, 1, 2, 3], [2]]


def test_ctc_loss_hand_computed():
    probs = torch.tensor([[[0.5, 0.2, 0.3]], [[0.1, 0.6, 0.3]]])  # (N=2, T=1, V=3)
    log_probs = probs.log()
    lengths = torch.tensor([1, 1])
    # T=1, one label: the only path is the label itself.
    losses = ctc_loss(log_probs, lengths, [[2], [1]], reduction="none")
    assert torch.allclose(losses, torch.tensor([-math.log(0.3), -math.log(0.6)]))
    mean = ctc_loss(log_probs, lengths, [[2], [1]])
    assert torch.isclose(mean, losses.mean())
    padded = (torch.tensor([[2], [1]]), torch.tensor([1, 1]))
    assert torch.isclose(ctc_loss(log_probs, lengths, padded, reduction="sum"), losses.sum())
    # Two labels cannot fit in one frame: infinite loss becomes 0.
    assert ctc_loss(log_probs[:1], lengths[:1], [[1, 2]]).item() == 0.0


def test_tiny_model_overfits_one_batch():
    model = tiny_model(dataclasses.replace(TINY, dropout=0.0)).train()
    x, lens = batch([180, 150, 120])
    targets = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [3, 1, 4, 1, 5]]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        out = model(x, lens)
        loss = ctc_loss(out.log_probs, out.lengths, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_dropout_keeps_one_minus_p_scaled_and_is_seeded():
    from mlkd_cli.models.conformer import Dropout

    drop = Dropout(0.1)
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 1e6 draws: the sd of the share is 3e-4
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the same mask and scale
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)
    drop.eval()
    assert drop(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
