"""What the benchmark scripts share: running mlkd quietly, reading the trainer's throughput and a
streaming export's left context."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def mlkd(*args: str) -> None:
    """`mlkd ARGS` in a fresh process, output discarded; an error stops the benchmark."""
    subprocess.run([sys.executable, "-m", "mlkd_cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def left_chunks(model: Path) -> int:
    """num_left_chunks of a streaming export (its metadata): what sherpa-onnx's OnlineRecognizer is told."""
    from mlkd_cli.export.contract import session

    return int(session(model).get_modelmeta().custom_metadata_map["num_left_chunks"])


def train_speed(exp: Path) -> float:
    """Mean seconds of audio per second the trainer logged, first window (warm-up) left out."""
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["audio_per_s"] for r in records if r["kind"] == "train"][1:]
    return sum(speeds) / len(speeds)
