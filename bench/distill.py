"""Distillation throughput with cached and with on-the-fly teacher targets, against plain CTC.

Runs the real commands for a short while on prepared data and demo teachers and reads the
throughput the trainer logs (first log window left out). Plain CTC = `mlkd train-teacher`
with the student's architecture (same model, no teachers). The cache's one-off build time
is reported apart: it is paid once per teacher and reused by every later run.
Usage: python bench/distill.py DATA_DIR EXP_DIR [--steps 200]   (teachers: EXP_DIR/teacher_*)
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import yaml
from common import mlkd, train_speed

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "conf" / "model" / "student_demo.yaml"


def cache_seconds(exp: Path) -> float:
    return sum(float(s) for s in re.findall(r"targets for \d+ cuts cached in \S+ \(([\d.]+) s\)",
                                            (exp / "log" / "train.0.log").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("exp")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    teachers = sorted(str(p) for p in Path(args.exp).glob("teacher_*") if (p / "final.pt").is_file())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = yaml.safe_load((ROOT / "conf" / "train" / "distill_demo.yaml").read_text())
        config = work / "train.yaml"
        config.write_text(yaml.safe_dump({**base, "max_steps": args.steps, "valid_interval": args.steps,
                                          "log_interval": 25, "average": 1}))
        common = ["--data", args.data, "--model-config", str(STUDENT), "--train-config", str(config)]
        demo = yaml.safe_load((ROOT / "conf" / "kd" / "demo.yaml").read_text())
        variants = {"cached": {"targets": "cached", "teacher_input": "clean"},
                    "live": {"targets": "on-the-fly", "teacher_input": "clean"},
                    "live-augmented": {"targets": "on-the-fly", "teacher_input": "augmented"}}
        mlkd("train-teacher", *common, "--lang", "en", str(work / "ctc"))
        for name, change in variants.items():
            kd = work / f"{name}.yaml"
            kd.write_text(yaml.safe_dump({**demo, **change}))
            mlkd("distill", *common, "--kd-config", str(kd), *teachers, str(work / name))
        ctc = train_speed(work / "ctc")
        cached, live, augmented = (train_speed(work / name) for name in variants)
        print(f"student {STUDENT.stem}, {len(teachers)} teachers, {args.steps} steps of 50 s batches, {base['precision']}, "
              "the demo objective (layer KD + KL + CTC + LID):")
        print(f"  plain CTC training                         {ctc:6.0f} s of audio per second")
        print(f"  distill, cached targets                    {cached:6.0f} s/s  ({cached / ctc:.2f} x plain CTC)"
              f"  + {cache_seconds(work / 'cached'):.1f} s once to build the cache")
        print(f"  distill, on-the-fly targets                {live:6.0f} s/s  ({live / ctc:.2f} x plain CTC)")
        print(f"  distill, on-the-fly, teachers see SpecAug  {augmented:6.0f} s/s  ({augmented / ctc:.2f} x plain CTC)")
        print(f"  cached / on-the-fly                        {cached / live:.2f} x")


if __name__ == "__main__":
    main()
