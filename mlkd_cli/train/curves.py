"""``metrics.jsonl`` (one JSON object per log or validation event) and its PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

from mlkd_cli.fsutil import atomic_path, atomic_write_text


def append_metrics(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after ``last_step``: a resumed run logs those steps again."""
    kept = [r for r in read_metrics(path) if r["step"] <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_curves(metrics_path: Path, png_path: Path, title: str) -> None:
    """Training loss and validation loss/CER against the step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    fig, (ax_loss, ax_cer) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if valid:
        ax_loss.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="dev loss")
        with_cer = [r for r in valid if "cer" in r]  # distillation without a trained CTC head has none
        ax_cer.plot([r["step"] for r in with_cer], [100 * r["cer"] for r in with_cer], "o-", color="C2")
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title=title)
    ax_loss.legend()
    ax_cer.set(xlabel="step", ylabel="dev CER (%) greedy", title="dev CER")
    ax_cer.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
