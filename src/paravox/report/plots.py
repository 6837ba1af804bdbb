"""Result plots: DET curves (normal-deviate axes), confusion matrices, training curves and
2-D embedding maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import norm
from sklearn.manifold import TSNE

from paravox.evaluation.metrics import det_points, equal_error_rate
from paravox.utils.atomic_files import atomic_path


def _save(fig, out_png: str | Path, tight_layout: bool = True) -> Path:
    """Write and close; without ``tight_layout`` (figures with a shared colour bar) the saved
    area is cropped to the drawing instead."""
    out = Path(out_png)
    fmt = out.suffix[1:] or "png"
    if tight_layout:
        fig.tight_layout()
    with atomic_path(out) as tmp:  # whole or not at all
        if tight_layout:
            fig.savefig(tmp, dpi=120, format=fmt)
        else:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=fmt)
    return out


def det_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out_png: str | Path,
             title: str = "DET") -> Path:
    """``curves``: name -> (scores, labels). Axes: false-alarm and miss probability on the
    normal-deviate scale (a Gaussian score model gives straight lines); EER marked."""
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999])
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
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
    return _save(fig, out_png)


def confusion_plot(confusion: np.ndarray, classes: list[str], out_png: str | Path,
                   title: str = "confusion") -> Path:
    """Row-normalised confusion matrix (true class per row) with counts in the cells."""
    size = 1.2 + 0.55 * len(classes)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = draw_confusion(ax, confusion, classes, title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall")
    return _save(fig, out_png)


def draw_confusion(ax, confusion: np.ndarray, classes: list[str], title: str,
                   x_labels: bool = True, y_labels: bool = True):
    """One row-normalised confusion matrix on ``ax`` (counts in the cells)."""
    c = np.asarray(confusion, float)
    rates = c / np.maximum(c.sum(1, keepdims=True), 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes if x_labels else [], rotation=45, ha="right",
                  fontsize=7)
    ax.set_yticks(range(len(classes)), classes if y_labels else [], fontsize=7)
    ax.set_title(title, fontsize=9)
    return im


def confusion_grid(panels: dict[tuple[str, str], tuple[np.ndarray, list[str]]],
                   out_png: str | Path, title: str = "") -> Path:
    """Confusions for (row, column) panels, e.g. (protocol, method) -> (matrix, classes)."""
    rows = list(dict.fromkeys(r for r, _ in panels))
    cols = list(dict.fromkeys(c for _, c in panels))
    fig = Figure(figsize=(2.8 * len(cols) + 1.5, 2.9 * len(rows) + 0.8))
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    im = None
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            if (r, c) not in panels:
                ax.axis("off")
                continue
            matrix, classes = panels[(r, c)]
            im = draw_confusion(ax, matrix, classes, f"{c}\n{r}", x_labels=i == len(rows) - 1,
                                y_labels=j == 0)
            if i == len(rows) - 1:
                ax.set_xlabel("predicted", fontsize=8)
            if j == 0:
                ax.set_ylabel("true", fontsize=8)
    if title:
        fig.suptitle(title)
    if im is not None:
        fig.colorbar(im, ax=axes, fraction=0.02, label="recall")
    return _save(fig, out_png, tight_layout=False)


def training_curves(logs: dict[str, list[dict[str, str]]], out_png: str | Path,
                    keys: tuple[str, ...] = ("train/loss",)) -> Path:
    """Loss against step per run, from the rows of each run's CSV log
    (:func:`~paravox.training.run_folder.run_metrics`; one panel per run: scales differ
    between objectives). A light line shows every step, a dark one a running mean."""
    fig = Figure(figsize=(3.6 * len(logs), 3.0))
    axes = fig.subplots(1, len(logs), squeeze=False)
    for ax, (name, rows) in zip(axes[0], logs.items()):
        for key in keys:
            pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
            if not pts:
                continue
            x, y = np.array(pts).T
            k = max(1, len(y) // 20)
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            line, = ax.plot(x, y, alpha=0.3, lw=0.8)
            ax.plot(x[k - 1:], smooth, color=line.get_color(), label=key)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss")
    return _save(fig, out_png)


def projection_grid(embeddings: dict[str, np.ndarray], colourings: dict[str, list[str]],
                    out_png: str | Path, seed: int = 0) -> Path:
    """2-D t-SNE maps of each model's embeddings (columns), coloured by each label (rows).
    Cosine geometry: embeddings are length-normalised first."""
    names = list(embeddings)
    fig = Figure(figsize=(3.0 * len(names), 3.0 * len(colourings) + 0.4))
    axes = fig.subplots(len(colourings), len(names), squeeze=False)
    cmap = matplotlib.colormaps["tab20"]
    for j, name in enumerate(names):
        x = embeddings[name]
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        for i, (label_name, labels) in enumerate(colourings.items()):
            ax = axes[i, j]
            classes = sorted(set(labels))
            index = {c: k for k, c in enumerate(classes)}
            colours = [cmap(index[c] % 20) for c in labels]
            ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=6, linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"by {label_name}", fontsize=10)
            if j == len(names) - 1 and len(classes) <= 8:
                for c in classes:
                    ax.scatter([], [], color=cmap(index[c] % 20), label=c, s=12)
                ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
                          frameon=False)
    return _save(fig, out_png)


def layer_accuracy_plot(models: dict[str, list[dict]], out_png: str | Path,
                        floor: float | None = None, chance: float | None = None,
                        probe: str = "linear", title: str = "phone probe by layer") -> Path:
    """Frame accuracy of a phone probe on each layer (input side on the left), one line per
    model, the layer names beside the points at the ends; the log-mel floor as a dashed line
    and chance in the title (the axis is zoomed to the data). ``models``: name -> the
    probe's rows (``layer``, ``probe``, ``frame_accuracy``)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    values = []
    for name, rows in models.items():
        pts = [r for r in rows if r["probe"] == probe and r["layer"] not in ("log-mel",
                                                                              "weighted")]
        acc = [100 * r["frame_accuracy"] for r in pts]
        values += acc
        ax.plot(range(len(pts)), acc, marker="o",
                label=f"{name} ({pts[0]['layer']} … {pts[-1]['layer']})" if pts else name)
    if floor is not None:
        ax.axhline(100 * floor, color="black", ls="--", lw=1, label="log-mel floor")
        values.append(100 * floor)
    if values:
        ax.set_ylim(max(min(values) - 5, 0), min(max(values) + 5, 100))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer index (input side first)")
    ax.set_ylabel(f"frame accuracy, {probe} probe (%)")
    ax.set_title(title + (f" (chance {100 * chance:.1f} %)" if chance is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out_png)


def loss_terms_plot(logs: dict[str, list[dict[str, str]]], terms: list[str],
                    out_png: str | Path, title: str = "training curves per loss term") -> Path:
    """One panel per loss term (e.g. ``train/frame``), one smoothed line per run that logs it,
    from the rows of each run's CSV log (:func:`~paravox.training.run_folder.run_metrics`):
    how each term falls alone and in combination."""
    fig = Figure(figsize=(4.2 * len(terms), 3.3))
    axes = fig.subplots(1, len(terms), squeeze=False)
    data = logs
    for ax, term in zip(axes[0], terms):
        for name, rows in data.items():
            pts = [(int(r["step"]), float(r[term])) for r in rows if r.get(term)]
            if not pts:
                continue
            x, y = np.array(pts).T
            k = max(1, len(y) // 20)
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=name)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out_png)


def staged_curves_plot(curves: dict[str, dict], keys: list[str], out_png: str | Path,
                       titles: dict[str, str] | None = None) -> Path:
    """One panel per logged quantity (e.g. ``train/mi``), one smoothed line per run across
    the stages of a multi-stage recipe, a dashed line where the second stage starts: whether
    a term moves when a stage switches it on. ``curves``: run -> ``{"series": {key: [(step,
    value), ...]}, "stage2_start": step}``."""
    fig = Figure(figsize=(4.2 * len(keys), 3.3))
    axes = fig.subplots(1, len(keys), squeeze=False)
    boundary = None
    for ax, key in zip(axes[0], keys):
        for name, c in curves.items():
            pts = c["series"].get(key, [])
            if not pts:
                continue
            x, y = np.array(pts, dtype=float).T
            k = max(1, len(y) // 15)
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=name)
            boundary = c.get("stage2_start", boundary)
        if boundary:
            ax.axvline(boundary, color="black", ls="--", lw=0.8)
        ax.set_title((titles or {}).get(key, key), fontsize=10)
        ax.set_xlabel("step (stage 1, then stage 2 after the dashed line)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, out_png)


def metric_curves_plot(curves: dict[str, list[tuple[int, float]]], out_png: str | Path,
                       ylabel: str, title: str, hline: tuple[float, str] | None = None,
                       percent: bool = False) -> Path:
    """One line per run of a metric against training steps (e.g. EER, teacher entropy),
    with an optional horizontal reference line ``(value, label)`` such as log K."""
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    scale = 100.0 if percent else 1.0
    for name, pts in curves.items():
        if pts:
            x, y = np.array(pts, dtype=float).T
            ax.plot(x, scale * y, marker="o" if len(x) < 30 else None, ms=3, label=name)
    if hline is not None:
        ax.axhline(hline[0], color="grey", ls="--", lw=1, label=hline[1])
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_png)
