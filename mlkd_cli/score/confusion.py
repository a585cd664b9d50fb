"""The language confusion matrix of a scored decode dir as a PNG (``lid_confusion.png``)."""

from __future__ import annotations

from pathlib import Path

from mlkd_cli.fsutil import atomic_path
from mlkd_cli.data.language import UNKNOWN
from mlkd_cli.score.metrics import LidScore

CONFUSION_PNG = "lid_confusion.png"


def confusion_labels(lid: LidScore) -> tuple[list[str], list[str]]:
    """Rows: reference languages, trained ones first; columns: the trained (or predicted)
    languages, then ``unknown``."""
    refs = sorted(lid.confusion, key=lambda lang: (not lid.is_trained(lang), lang))
    predicted = {p for row in lid.confusion.values() for p in row}
    columns = sorted((set(lid.trained) | predicted) - {UNKNOWN})
    return refs, [*columns, UNKNOWN]


def plot_confusion(lid: LidScore, png_path: Path, title: str) -> None:
    """Counts and row shares, one row per reference language; unseen languages below a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs, columns = confusion_labels(lid)
    counts = [[lid.confusion[ref].get(col, 0) for col in columns] for ref in refs]
    shares = [[n / max(sum(row), 1) for n in row] for row in counts]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 + 0.75 * len(columns)), 1.4 + 0.5 * len(refs)))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.6 else "black")
    trained = sum(lid.is_trained(ref) for ref in refs)
    if trained < len(refs):
        ax.axhline(trained - 0.5, color="C3", lw=1.5)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(refs)), [ref if lid.is_trained(ref) else f"{ref} (unseen)" for ref in refs])
    ax.set(xlabel="predicted language", ylabel="reference language", title=title)
    ax.title.set_fontsize(9)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
