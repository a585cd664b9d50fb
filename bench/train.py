"""Training throughput (seconds of audio per second) and peak memory of `mlkd train-teacher`.

Runs the real command for a short while on prepared data, once per precision, and reads the
throughput the trainer logs to metrics.jsonl (first log window, with warm-up effects, left out).
Usage: python bench/train.py DATA_DIR [--lang en] [--steps 200] [--model conf/model/demo.yaml]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(data: str, lang: str, steps: int, model: str, precision: str, work: Path) -> tuple[float, float]:
    base = yaml.safe_load((ROOT / "conf" / "train" / "teacher_demo.yaml").read_text())
    config = work / f"{precision}.yaml"
    config.write_text(yaml.safe_dump({**base, "max_steps": steps, "valid_interval": steps, "log_interval": 25,
                                      "precision": precision, "average": 1}))
    exp = work / f"exp_{precision}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "mlkd_cli", "train-teacher", "--data", data, "--lang", lang,
                    "--model-config", model, "--train-config", str(config), str(exp)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_mib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    records = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["audio_per_s"] for r in records if r["kind"] == "train"][1:]
    return sum(speeds) / len(speeds), peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--model", default=str(ROOT / "conf" / "model" / "demo.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for precision in ("fp32", "bf16"):
            speed, peak = run(args.data, args.lang, args.steps, args.model, precision, Path(work))
            print(f"{Path(args.model).stem} preset, {precision}: {speed:.0f} s of audio per second, "
                  f"peak RSS {peak:.0f} MiB ({args.steps} steps, batches of 50 s)")


if __name__ == "__main__":
    main()
