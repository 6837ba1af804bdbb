"""Result plots: DET curves (normal-deviate axes), confusion matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out_png: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def det_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out_png: str | Path,
             title: str = "DET") -> Path:
    """``curves``: name -> (scores, labels). Axes: false-alarm and miss probability on the
    normal-deviate scale (a Gaussian score model gives straight lines); EER marked."""
    from scipy.stats import norm

    from paravox.evaluation.metrics import det_points, equal_error_rate

    plt = _pyplot()
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999])
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    clip = lambda p: norm.ppf(np.clip(p, 5e-4, 1 - 5e-4))  # noqa: E731
    for name, (scores, labels) in curves.items():
        p_fa, p_miss = det_points(scores, labels)
        eer = equal_error_rate(scores, labels)
        ax.plot(clip(p_fa), clip(p_miss), label=f"{name} (EER {100 * eer:.1f} %)")
    ax.plot(clip(ticks), clip(ticks), color="grey", lw=0.5, ls=":")
    ax.set_xticks(clip(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(clip(ticks), [f"{100 * t:g}" for t in ticks])
    lim = clip(np.array([0.0, 1.0]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("false-alarm probability (%)")
    ax.set_ylabel("miss probability (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, out_png)


def confusion_plot(confusion: np.ndarray, classes: list[str], out_png: str | Path,
                   title: str = "confusion") -> Path:
    """Row-normalised confusion matrix (true class per row) with counts in the cells."""
    plt = _pyplot()
    c = np.asarray(confusion, float)
    rates = c / np.maximum(c.sum(1, keepdims=True), 1)
    size = 1.2 + 0.55 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall")
    return _save(plt, fig, out_png)
