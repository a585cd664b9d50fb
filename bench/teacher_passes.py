"""How much cheaper can a teacher's pass be, and what would it buy a distillation step?

On batches of about 50 s of a prepared dev set (the demo's batch size), times one teacher's
forward pass (inference mode) in fp32, under bf16 autocast and with its linear layers in int8
(torch's dynamic quantization), beside one training step of the student (forward, CTC loss,
backward, AdamW) on the same batch; and how far the cheaper passes move the teacher's outputs
(relative squared error of its hidden layers, frames whose best token changes). The teacher's
share of an on-the-fly distillation step bounds what a cheaper pass can buy.

    OMP_NUM_THREADS=1 .venv/bin/python bench/teacher_passes.py --data data --teacher exp/teacher_en \\
        [--student conf/model/student_demo.yaml] [--batches 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from mlkd_cli.config import load_yaml
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.distill.ensemble import collate_inputs
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.models import ModelConfig, build_model, ctc_loss
from mlkd_cli.train.batches import make_sampler


def timed(fn, repeats: int) -> tuple[float, object]:
    """The best of ``repeats`` wall times of ``fn()`` (seconds), and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", default="conf/model/student_demo.yaml")
    parser.add_argument("--set", default="dev")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = PreparedData(args.data)
    teacher = load_model_dir(args.teacher)
    lang = teacher.own_language
    cuts = data.cuts(args.set)
    if lang:
        cuts = cuts.filter(lambda c: c.supervisions[0].language == lang)
    fp32 = teacher.model.eval()
    int8 = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8)
    tokenizer = data.tokenizer()
    student = build_model(load_yaml(ModelConfig, args.student).with_vocab(tokenizer.vocab_size))
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def step(inputs, targets):
        out = student(inputs.features, inputs.feature_lens)
        loss = ctc_loss(out.log_probs, out.lengths, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times = {"fp32": 0.0, "bf16": 0.0, "int8": 0.0, "student step": 0.0}
    errors = {"bf16": [], "int8": []}
    changed = {"bf16": [0, 0], "int8": [0, 0]}
    audio = 0.0
    for k, batch in enumerate(make_sampler(cuts, 50.0, shuffle=False, seed=0)):
        if k == args.batches:
            break
        inputs = collate_inputs(batch, audio=False)
        targets = [tokenizer.encode(c.supervisions[0].text) for c in batch]
        audio += sum(c.duration for c in batch)
        with torch.inference_mode():
            seconds, ref = timed(lambda: fp32(inputs.features, inputs.feature_lens), args.repeats)
            times["fp32"] += seconds

            def bf16():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return fp32(inputs.features, inputs.feature_lens)

            for name, fn in (("bf16", bf16), ("int8", lambda: int8(inputs.features, inputs.feature_lens))):
                seconds, out = timed(fn, args.repeats)
                times[name] += seconds
                for h, h_ref in zip(out.hidden, ref.hidden):
                    errors[name].append(((h.float() - h_ref) ** 2).sum().item() / (h_ref ** 2).sum().item())
                mask = torch.arange(ref.log_probs.size(1))[None, :] < ref.lengths[:, None]
                changed[name][0] += int(((out.log_probs.argmax(-1) != ref.log_probs.argmax(-1)) & mask).sum())
                changed[name][1] += int(mask.sum())
        times["student step"] += timed(lambda: step(inputs, targets), args.repeats)[0]

    print(f"teacher {args.teacher} ({lang or 'multilingual'}), {args.batches} batches, {audio:.1f} s of {args.set} "
          f"audio, {torch.get_num_threads()} thread(s), best of {args.repeats}")
    for name, seconds in times.items():
        print(f"  {name:13s} {seconds:7.3f} s  ({audio / seconds:6.1f} s of audio per s)")
    for name in ("bf16", "int8"):
        print(f"  {name}: {times['fp32'] / times[name]:.2f} x the fp32 pass; hidden layers' relative squared error "
              f"{sum(errors[name]) / len(errors[name]):.2e}; best token changed on {changed[name][0]} of "
              f"{changed[name][1]} frames")
    share = times["fp32"] / (times["fp32"] + times["student step"])
    print(f"  the fp32 teacher pass is {share:.1%} of (teacher pass + student step): a free teacher would make an "
          f"on-the-fly step at most {1 / (1 - share):.2f} x as fast")


if __name__ == "__main__":
    main()
