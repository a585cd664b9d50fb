"""`mlkd export`: the sherpa-onnx contract, onnxruntime vs PyTorch, int8, and the same text as `mlkd decode`."""

from __future__ import annotations

import json
import shutil
from collections import Counter
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
import soundfile as sf
import torch

from conftest import run_cli
from fixtures.exports import RATE, make_experiment, run_export
from mlkd_cli.data.features import fbank_extractor
from mlkd_cli.errors import DataError
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.export.contract import check_offline_model, session
from mlkd_cli.export.offline import PAD_VALUE, compare_onnx

# sherpa-onnx kills the process on a bad model: it runs in a child process, after check_offline_model.
SHERPA = """
import json, sys
import sherpa_onnx, soundfile as sf
model, tokens, *wavs = sys.argv[1:]
recognizer = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model=model, tokens=tokens, num_threads=1)
streams = []
for wav in wavs:
    samples, rate = sf.read(wav, dtype="float32")
    streams.append(recognizer.create_stream())
    streams[-1].accept_waveform(rate, samples)
recognizer.decode_streams(streams)  # one padded batch
print(json.dumps([s.result.text for s in streams]))
"""


@pytest.fixture(scope="module")
def plain(tmp_path_factory, data_dir, wavs) -> Path:
    """A plain tiny model exported with --int8 to its default export dir."""
    exp = make_experiment(tmp_path_factory.mktemp("export_exp") / "plain", data_dir, wavs[0])
    result = run_export(exp, "--int8")
    assert result.exit_code == 0, result.output
    return exp


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory, data_dir, wavs) -> Path:
    exp = make_experiment(tmp_path_factory.mktemp("export_exp") / "adaptive", data_dir, wavs[0], languages=("de", "en"))
    result = run_export(exp, "-o", exp / "onnx")
    assert result.exit_code == 0, result.output
    return exp


def loaded(exp: Path):
    return load_model_dir(exp).model.eval()


def test_export_writes_model_and_sherpa_token_table(plain, data_dir):
    out = plain / "export"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "model.int8.onnx", "model.onnx", "stage.json", "tokens.txt"]
    assert (out / "tokens.txt").read_text(encoding="utf-8") == (data_dir / "lang_char" / "tokens.txt").read_text(encoding="utf-8")
    proto = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["x", "x_lens"]
    assert [o.name for o in proto.graph.output] == ["log_probs", "log_probs_len"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["vocab_size"] == str(len((out / "tokens.txt").read_text().splitlines())) and meta["languages"] == ""
    check_offline_model(out / "model.onnx", out / "tokens.txt")
    check_offline_model(out / "model.int8.onnx", out / "tokens.txt")


@pytest.mark.parametrize("which", ["plain", "adaptive"])
def test_onnxruntime_matches_pytorch_on_a_padded_batch(which, request, wavs):
    exp = request.getfixturevalue(which)
    onnx_path = exp / ("export" if which == "plain" else "onnx") / "model.onnx"
    model = loaded(exp)
    feats = [fbank_extractor().extract(sf.read(w, dtype="float32")[0], RATE) for w in wavs]
    lengths = torch.tensor([f.shape[0] for f in feats])
    x = torch.full((2, int(lengths.max()), 80), PAD_VALUE)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = torch.from_numpy(f)
    with torch.no_grad():
        ref = model(x, lengths)
    sess = session(onnx_path)
    log_probs, out_lens = sess.run(None, {"x": x.numpy(), "x_lens": lengths.numpy()})
    assert out_lens.dtype == np.int64 and out_lens.tolist() == ref.lengths.tolist()
    for i, n in enumerate(out_lens.tolist()):
        assert np.abs(log_probs[i, :n] - ref.log_probs[i, :n].numpy()).max() < 1e-4
        alone, _ = sess.run(None, {"x": x[i : i + 1, :int(lengths[i])].numpy(), "x_lens": lengths[i : i + 1].numpy()})
        assert np.abs(alone[0, :n] - log_probs[i, :n]).max() < 1e-4  # padding never leaks in
    short, short_lens = sess.run(None, {"x": x[:1, :3].numpy(), "x_lens": np.array([3])})
    assert short_lens.tolist() == [0]  # under 7 frames: no output frame, and no onnxruntime error


def test_language_adaptive_export_conditions_on_predicted_language(adaptive):
    proto = onnx.load(str(adaptive / "onnx" / "model.onnx"))
    assert {p.key: p.value for p in proto.metadata_props}["languages"] == "de,en"
    assert len(proto.graph.output) == 2
    model = loaded(adaptive)
    x = torch.randn(1, 200, 80) * model.encoder.normalizer.std + model.encoder.normalizer.mean
    with torch.no_grad():
        forced = [model(x, torch.tensor([200]), language=torch.tensor([k])).log_probs for k in range(2)]
    assert (forced[0] - forced[1]).abs().max() > 1e-2  # the language input matters ...
    diff, agreement = compare_onnx(model, adaptive / "onnx" / "model.onnx")
    assert diff < 1e-4 and agreement == 1.0  # ... and the graph follows the predicted one


def test_int8_model_is_close(plain):
    diff, agreement = compare_onnx(loaded(plain), plain / "export" / "model.int8.onnx")
    # A random tiny model has small argmax margins (0.78 agreement here; a trained one about 0.98).
    assert diff < 4.0 and agreement > 0.5, (diff, agreement)


@pytest.mark.parametrize("which", ["plain", "adaptive"])
def test_sherpa_onnx_gets_the_same_text_as_mlkd_decode(which, request, wavs):
    exp = request.getfixturevalue(which)
    out = exp / ("export" if which == "plain" else "onnx")
    result = run_cli("decode", exp, *wavs)
    assert result.exit_code == 0, result.output
    ours = {Path(p).name: text for p, _, text in (line.split("\t") for line in result.stdout.splitlines() if "\t" in line)}
    check_offline_model(out / "model.onnx", out / "tokens.txt")
    sherpa = subprocess.run([sys.executable, "-c", SHERPA, out / "model.onnx", out / "tokens.txt", *wavs],
                            capture_output=True, text=True, timeout=120)
    assert sherpa.returncode == 0, sherpa.stderr
    theirs = dict(zip((w.name for w in wavs), json.loads(sherpa.stdout)))
    assert all(len(text) >= 20 for text in ours.values()) and any(" " in text for text in ours.values()), ours
    assert theirs == ours


def test_int8_model_runs_in_sherpa_onnx(plain, wavs):
    out = plain / "export"
    sherpa = subprocess.run([sys.executable, "-c", SHERPA, out / "model.int8.onnx", out / "tokens.txt", wavs[0]],
                            capture_output=True, text=True, timeout=120)
    assert sherpa.returncode == 0, sherpa.stderr
    assert json.loads(sherpa.stdout)[0].strip()


def test_not_an_experiment_names_the_missing_file(tmp_path):
    result = run_export(tmp_path / "nowhere")
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'nowhere' / 'config.yaml'}: not found" in result.output


def test_missing_final_pt_names_it(tmp_path, data_dir, wavs):
    exp = make_experiment(tmp_path / "exp", data_dir, wavs[0])
    (exp / "final.pt").unlink()
    result = run_export(exp)
    assert result.exit_code == 1 and f"Error: {exp / 'final.pt'}: checkpoint not found" in result.output
    assert not (exp / "export").exists()


@pytest.mark.parametrize("table, message", [
    ("<blk> 0\na 2\n", "ids must run 0..1 without gaps"),
    ("<eps> 0\na 1\n", "id 0 must be the CTC blank <blk>"),
    ("<blk> 0\na b 1\n", "tokens.txt:2: expected `symbol id`"),
    ("<blk> 0\na 1\n", "2 tokens, but the model emits"),
])
def test_bad_token_table_is_refused(tmp_path, data_dir, wavs, table, message):
    exp = make_experiment(tmp_path / "exp", data_dir, wavs[0])
    (tmp_path / "tokens.txt").write_text(table, encoding="utf-8")
    result = run_export(exp, "--tokens", tmp_path / "tokens.txt")
    assert result.exit_code == 1 and f"Error: {tmp_path / 'tokens.txt'}" in result.output and message in result.output


def test_contract_check_refuses_a_single_output_model(tmp_path, plain):
    """The graph sherpa-onnx segfaults on: it must be refused in Python."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 80])
    lens = helper.make_tensor_value_info("x_lens", TensorProto.INT64, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 80])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "one_output", [x, lens], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    with pytest.raises(DataError, match="sherpa-onnx needs outputs"):
        check_offline_model(tmp_path / "bad.onnx", plain / "export" / "tokens.txt")


# -- --int8 really quantizes: integer matrix products, int8 weights ----------------------------

def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def weight_products(proto: onnx.ModelProto) -> Counter:
    """Node types that multiply by a stored weight matrix (an initializer input)."""
    weights = {init.name for init in proto.graph.initializer}
    return Counter(n.op_type for n in proto.graph.node if n.op_type.startswith(("MatMul", "Gemm")) and weights & set(n.input))


def weight_bytes(proto: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(init).nbytes for init in proto.graph.initializer)


def test_int8_model_multiplies_every_weight_matrix_in_integers(plain):
    fp32, int8 = load(plain / "export" / "model.onnx"), load(plain / "export" / "model.int8.onnx")
    products = weight_products(fp32)
    assert products["MatMul"] >= 10  # the Linear layers (the LID head and language embedding may be Gemm)
    quantized = weight_products(int8)
    assert set(quantized) == {"MatMulInteger"} and quantized["MatMulInteger"] >= products["MatMul"], (products, quantized)
    ops = Counter(n.op_type for n in int8.graph.node)
    assert ops["DynamicQuantizeLinear"] >= 1  # activations quantized on the fly


def test_int8_weights_take_under_half_the_bytes(plain):
    # The whole file shrinks less: in a model this small most of it is graph, not weights.
    fp32, int8 = weight_bytes(load(plain / "export" / "model.onnx")), weight_bytes(load(plain / "export" / "model.int8.onnx"))
    assert int8 < 0.4 * fp32, (int8, fp32)


def test_an_exported_model_as_an_onnx_teacher_gives_mlkd_s_own_greedy_transcripts(plain, wavs):
    """Pseudo-labels for sequence-level KD: sherpa-onnx running the export (a black-box
    teacher) and the mlkd model dir (a white-box teacher) agree with `mlkd decode`."""
    from torch.nn.utils.rnn import pad_sequence

    from mlkd_cli.teachers.base import TeacherInputs
    from mlkd_cli.teachers.load import load_teacher

    result = run_cli("decode", plain, *wavs)
    assert result.exit_code == 0, result.output
    ours = [text for _, _, text in (line.split("\t") for line in result.stdout.splitlines() if "\t" in line)]
    samples = [torch.from_numpy(sf.read(w, dtype="float32")[0]) for w in wavs]
    features = [torch.from_numpy(fbank_extractor().extract(s.numpy(), 16000)) for s in samples]
    inputs = TeacherInputs(pad_sequence(features, batch_first=True), torch.tensor([len(f) for f in features]),
                           pad_sequence(samples, batch_first=True), torch.tensor([len(s) for s in samples]))
    black_box = load_teacher(f"de=onnx:{plain / 'export'}")
    assert black_box.kind == "onnx" and not black_box.white_box and black_box.num_parameters > 1000
    white_box = load_teacher(f"de={plain}")
    assert [t.text for t in black_box.transcribe(inputs)] == ours
    said = white_box.transcribe(inputs)
    assert [t.text for t in said] == ours and all(0 < t.confidence <= 1 for t in said)
    assert all(len(text) >= 20 for text in ours)


def test_an_onnx_teacher_outside_sherpa_s_contract_is_refused_before_sherpa_runs(plain, tmp_path):
    from mlkd_cli.errors import ConfigError
    from mlkd_cli.teachers.load import load_teacher

    broken = tmp_path / "onnx"
    shutil.copytree(plain / "export", broken)
    (broken / "tokens.txt").write_text("a 0\nb 1\n")
    with pytest.raises(ConfigError, match=r"teacher de=onnx-zipformer-ctc:.*tokens.txt: id 0 must be the CTC blank <blk>"):
        load_teacher(f"de=onnx:{broken}")
    (broken / "model.onnx").unlink()
    (broken / "model.int8.onnx").unlink()
    with pytest.raises(ConfigError, match="no model.onnx or model.int8.onnx; give the dir of a sherpa-onnx CTC model"):
        load_teacher(f"de=onnx:{broken}")
