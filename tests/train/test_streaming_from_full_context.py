"""A streaming model from a full-context one: `mlkd finetune --init FULL --model-config STREAMING`."""

from __future__ import annotations

import torch

from conftest import TINY_MODEL, TINY_TRAIN, run_cli
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.models.conformer import ConvModule, causal_kernels

STREAMING_BLOCK = "streaming:\n  chunk_ms: [160, 320]\n  left_context_ms: 640\n"


def test_causal_kernels_keep_the_past_and_current_taps_in_their_places():
    a, b, c, d, e = 1.0, 2.0, 3.0, 4.0, 5.0
    state = {"encoder.layers.0.conv.depthwise.weight": torch.tensor([[[a, b, c, d, e]]]),
             "encoder.layers.0.conv.depthwise.bias": torch.tensor([9.0])}
    out = causal_kernels(state)
    # centred taps read t-2, t-1, t, t+1, t+2; causal ones t-4 .. t: a, b, c keep reading t-2, t-1, t
    assert out["encoder.layers.0.conv.depthwise.weight"].tolist() == [[[0.0, 0.0, a, b, c]]]
    assert out["encoder.layers.0.conv.depthwise.bias"].tolist() == [9.0]


def test_the_causal_module_equals_the_full_context_one_where_it_has_no_future():
    torch.manual_seed(0)
    full, causal = ConvModule(8, 7, 0.0, causal=False).eval(), ConvModule(8, 7, 0.0, causal=True).eval()
    causal.load_state_dict(causal_kernels(full.state_dict()))
    x, mask = torch.randn(1, 20, 8), torch.ones(1, 20, 1, dtype=torch.bool)
    last_full, last_causal = full(x, mask)[0, -1], causal(x, mask)[0, -1]
    torch.testing.assert_close(last_causal, last_full)  # the last frame has no future to look at
    assert not torch.allclose(causal(x, mask)[0, 10], full(x, mask)[0, 10])  # the others did


def test_finetune_makes_a_streaming_model_of_a_full_context_one(prepared, tiny_adaptive, tmp_path):
    config = tmp_path / "streaming.yaml"
    config.write_text(TINY_MODEL.read_text() + STREAMING_BLOCK)
    exp = tmp_path / "streaming"
    result = run_cli("finetune", "--data", prepared, "--init", tiny_adaptive, "--model-config", config,
                     "--train-config", TINY_TRAIN, "--max-steps", "4", exp)
    assert result.exit_code == 0, result.output
    model = load_model_dir(exp).model.config
    assert model.streaming is not None and model.streaming.chunk_ms == (160, 320)
    assert model.d_model == load_model_dir(tiny_adaptive).model.config.d_model
    assert "a streaming model (chunks of 160/320 ms) from the full-context" in (exp / "log" / "train.0.log").read_text()

    # Another architecture, a streaming init, a config without a streaming block: one error each.
    wider = tmp_path / "wider.yaml"
    wider.write_text(TINY_MODEL.read_text().replace("d_model: 32", "d_model: 48") + STREAMING_BLOCK)
    for init, model_config, says in [
        (tiny_adaptive, wider, "it differs in d_model 48 (the model's: 32)"),
        (exp, config, "the model streams already"),
        (tiny_adaptive, TINY_MODEL, "may only add a `streaming:` block; this one has none"),
    ]:
        result = run_cli("finetune", "--data", prepared, "--init", init, "--model-config", model_config,
                         "--train-config", TINY_TRAIN, tmp_path / "refused")
        assert result.exit_code != 0 and says in result.output, result.output
        assert not (tmp_path / "refused").exists()
