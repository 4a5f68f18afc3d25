"""Training-curve PNG: loss and dev score against steps."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shoulders.utils.fs import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: str | Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_history(history: dict, path: str | Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    train = history.get("train", [])
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    evals = history.get("eval", [])
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in evals], [r["average"] for r in evals], "o-", color="tab:orange", label="dev score")
        ax2.set_ylabel("dev score (%)", color="tab:orange")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
