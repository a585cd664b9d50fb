"""Training and inference throughput of a model preset on CPU, in seconds of audio per second.

One batch of random features (utterances of 2-6 s, about 50 s of audio in all, padded to
the longest) goes through forward + CTC loss + backward + AdamW step, in fp32, under bf16
autocast, and, to measure what mlkd changes on a CPU, under bf16 autocast with torch's bf16
attention kernel (mlkd computes attention in fp32, ``conformer.attend``) and with torch's dropout
(mlkd draws 16-bit masks, ``conformer.Dropout``); then forward only, without gradients. The
optimizer is fused AdamW, as the trainer's. Audio seconds count real frames only.

    .venv/bin/python bench/model_speed.py [--preset conf/model/demo.yaml] [--steps 5] [--seconds 2 6]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from mlkd_cli.config import load_yaml
from mlkd_cli.models import conformer
from mlkd_cli.models import ModelConfig, build_model, ctc_loss, num_parameters

FRAMES_PER_SECOND = 100
VOCAB = 40  # about a character vocabulary of one language


def make_batch(seconds: float, shortest: float, longest: float, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    lengths = []
    while sum(lengths) < seconds * FRAMES_PER_SECOND:
        lengths.append(int(torch.randint(int(shortest * FRAMES_PER_SECOND), int(longest * FRAMES_PER_SECOND) + 1, (1,),
                                         generator=g)))
    features = torch.randn(len(lengths), max(lengths), 80, generator=g)
    targets = [torch.randint(1, VOCAB, (n // 25,), generator=g).tolist() for n in lengths]  # ~4 tokens/s
    return features, torch.tensor(lengths), targets


def timed(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", type=Path, default=Path(__file__).resolve().parent.parent / "conf/model/demo.yaml")
    parser.add_argument("--batch-seconds", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, nargs=2, default=(2.0, 6.0), metavar=("SHORTEST", "LONGEST"),
                        help="utterance durations (the demo corpus: about 1-3 s)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = load_yaml(ModelConfig, args.preset).with_vocab(VOCAB)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    features, lengths, targets = make_batch(args.batch_seconds, *args.seconds, seed=0)
    audio = lengths.sum().item() / FRAMES_PER_SECOND
    print(f"{args.preset.name}: {num_parameters(model) / 1e6:.2f} M parameters, {args.threads} threads, "
          f"batch of {len(lengths)} utterances, {audio:.1f} s audio padded to {features.size(1) / FRAMES_PER_SECOND:.1f} s")

    mlkd_attention, mlkd_dropout = conformer.attend, conformer.Dropout.forward

    def bf16_kernel(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    arms = (("fp32", None, mlkd_attention, mlkd_dropout),
            ("bf16 autocast", torch.bfloat16, mlkd_attention, mlkd_dropout),
            ("bf16, torch's bf16 attention", torch.bfloat16, bf16_kernel, mlkd_dropout),
            ("bf16, torch's dropout", torch.bfloat16, mlkd_attention, torch.nn.Dropout.forward))
    for name, dtype, attend, dropout in arms:
        conformer.attend, conformer.Dropout.forward = attend, dropout

        def train_step() -> None:
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(features, lengths)
            loss = ctc_loss(out.log_probs, out.lengths, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def infer_step() -> None:
            with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                model(features, lengths)

        model.train()
        train = timed(train_step, args.steps)
        model.eval()
        infer = timed(infer_step, args.steps)
        print(f"  {name:29s} train step {train:.3f} s = {audio / train:6.1f} s audio/s   "
              f"forward only {infer:.3f} s = {audio / infer:6.1f} s audio/s")


if __name__ == "__main__":
    main()
