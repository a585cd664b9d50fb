"""sherpa-onnx's file contract (mlkd_cli.export.contract): a file onnxruntime cannot load is one
error, the same for `mlkd export`'s checks and for ONNX teachers."""

from __future__ import annotations

import pytest

from mlkd_cli.errors import ConfigError, DataError, OnnxLoadError
from mlkd_cli.export.contract import check_offline_model, check_streaming_model, session
from mlkd_cli.teachers.load import load_teacher


@pytest.fixture
def unloadable(tmp_path):
    """A sherpa-onnx model dir whose model.onnx is not ONNX."""
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    (tmp_path / "tokens.txt").write_text("<blk> 0\na 1\n", encoding="utf-8")
    return tmp_path


def test_a_file_onnxruntime_cannot_load_is_an_onnx_load_error(unloadable):
    model, tokens = unloadable / "model.onnx", unloadable / "tokens.txt"
    message = rf"^{model}: onnxruntime cannot load it \(.+\)$"
    for check in (lambda: session(model), lambda: check_offline_model(model, tokens),
                  lambda: check_streaming_model(model, tokens, 4, 4)):
        with pytest.raises(OnnxLoadError, match=message):
            check()
    assert issubclass(OnnxLoadError, DataError)  # `mlkd` prints it as one line and exits 1


@pytest.mark.parametrize("loader", ["zipformer-ctc", "nemo-ctc", "wenet-ctc"])
def test_an_onnx_teacher_onnxruntime_cannot_load_names_the_teacher_and_the_file(unloadable, loader):
    with pytest.raises(ConfigError, match=rf"^teacher de=onnx-{loader}:{unloadable}: {unloadable / 'model.onnx'}: "
                                          r"onnxruntime cannot load it \("):
        load_teacher(f"de=onnx-{loader}:{unloadable}")
