"""`mlkd export --int8` writes a really quantized model: integer matrix products, int8 weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from conftest import run_cli


@pytest.fixture(scope="module")
def exported(tiny_adaptive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export_int8") / "onnx"
    result = run_cli("export", tiny_adaptive, "--int8", "-o", out)
    assert result.exit_code == 0, result.output
    return out


def load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def weight_products(proto: onnx.ModelProto) -> Counter:
    """Node types that multiply by a stored weight matrix (an initializer input)."""
    weights = {init.name for init in proto.graph.initializer}
    return Counter(n.op_type for n in proto.graph.node if n.op_type.startswith(("MatMul", "Gemm")) and weights & set(n.input))


def weight_bytes(proto: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(init).nbytes for init in proto.graph.initializer)


def test_int8_model_multiplies_every_weight_matrix_in_integers(exported):
    fp32, int8 = load(exported / "model.onnx"), load(exported / "model.int8.onnx")
    products = weight_products(fp32)
    assert products["MatMul"] >= 10  # the Linear layers (the LID head and language embedding may be Gemm)
    quantized = weight_products(int8)
    assert set(quantized) == {"MatMulInteger"} and quantized["MatMulInteger"] >= products["MatMul"], (products, quantized)
    ops = Counter(n.op_type for n in int8.graph.node)
    assert ops["DynamicQuantizeLinear"] >= 1  # activations quantized on the fly


def test_int8_weights_take_under_half_the_bytes(exported):
    # The whole file shrinks less: in a model this small most of it is graph, not weights.
    fp32, int8 = weight_bytes(load(exported / "model.onnx")), weight_bytes(load(exported / "model.int8.onnx"))
    assert int8 < 0.4 * fp32, (int8, fp32)
