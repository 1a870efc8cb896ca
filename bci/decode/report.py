"""Calibration figures of a trained decoder: reliability, expected calibration error, and the
training report (reliability diagram before/after temperature scaling, learning curves,
accuracies) as one PNG.

The reliability diagram and ECE follow Guo et al. 2017 ("On calibration of modern neural
networks", ICML): windows are binned by the confidence of their predicted class, and each bin's
accuracy is compared with its mean confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from bci.decode.base import Decoder


def _check(proba, targets, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    proba, targets = np.asarray(proba, dtype=float), np.asarray(targets)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba must have shape (n_windows, n_classes ≥ 2), got {proba.shape}.")
    if targets.shape != (len(proba),) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(
            f"targets must be {len(proba)} class indices (integers), got an array of shape "
            f"{targets.shape} and dtype {targets.dtype}."
        )
    if len(targets) and (targets.min() < 0 or targets.max() >= proba.shape[1]):
        raise ValueError(f"targets must lie in 0..{proba.shape[1] - 1}, got {targets.max()}.")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    return proba, targets


def reliability(proba, targets, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence against accuracy, in equal-width confidence bins.

    Parameters
    ----------
    proba : array, shape (n_windows, n_classes)
        Predicted class probabilities.
    targets : array of int, shape (n_windows,)
        True class indices.
    n_bins : int
        Bins over [0, 1]; bin ``k`` holds confidences in [k/n, (k+1)/n) (the last includes 1).

    Returns
    -------
    bin_confidence : array, shape (n_bins,)
        Mean confidence (the predicted class's probability) in each bin; NaN where empty.
    bin_accuracy : array, shape (n_bins,)
        Fraction of correct predictions in each bin; NaN where empty.
    bin_count : array of int, shape (n_bins,)
        Windows in each bin.
    """
    proba, targets = _check(proba, targets, n_bins)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == targets
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.bincount(index, confidence, n_bins) / count
        bin_accuracy = np.bincount(index, correct.astype(float), n_bins) / count
    return bin_confidence, bin_accuracy, count


def ece(proba, targets, n_bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean of |accuracy − confidence| over the
    bins of :func:`reliability` (0 is perfectly calibrated)."""
    confidence, accuracy, count = reliability(proba, targets, n_bins)
    if count.sum() == 0:
        raise ValueError("ece needs at least one window, got none.")
    filled = count > 0
    return float(
        np.sum(count[filled] * np.abs(accuracy[filled] - confidence[filled])) / count.sum()
    )


def plot_training_report(
    path,
    *,
    title: str = "",
    curves: dict[str, list[float]] | None = None,
    reliability_before: tuple[np.ndarray, np.ndarray] | None = None,
    reliability_after: tuple[np.ndarray, np.ndarray] | None = None,
    accuracy: dict[str, float] | None = None,
    n_bins: int = 10,
) -> Path:
    """Write the training report of a decoder as a PNG.

    Any subset of the panels may be given; with none, the figure says so.

    Parameters
    ----------
    path : path-like
        The PNG to write.
    title : str
        Figure title (subject, decoder kind, date).
    curves : dict of str to list of float, optional
        Per-epoch curves, e.g. ``{"training loss": [...], "validation loss": [...]}``.
    reliability_before, reliability_after : (proba, targets), optional
        Held-out probabilities, shape (n_windows, n_classes), and class indices, before and
        after temperature scaling.
    accuracy : dict of str to float, optional
        Accuracies (0–1) to compare, e.g. ``{"EEG": 0.8, "fNIRS": 0.7, "hybrid": 0.86}``.
    n_bins : int
        Bins of the reliability diagram.

    Returns
    -------
    path : Path
    """
    panels = []
    if reliability_before is not None or reliability_after is not None:
        panels.append("reliability")
    if curves:
        panels.append("curves")
    if accuracy:
        panels.append("accuracy")
    figure = Figure(figsize=(4.2 * max(len(panels), 1), 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    if title:
        figure.suptitle(title)
    if not panels:
        axes = figure.add_subplot()
        axes.axis("off")
        axes.text(0.5, 0.5, "no training figures were given", ha="center", va="center")
    for k, panel in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), k)
        if panel == "reliability":
            _plot_reliability(axes, reliability_before, reliability_after, n_bins)
        elif panel == "curves":
            _plot_curves(axes, curves)
        else:
            _plot_accuracy(axes, accuracy)
    path = Path(path)
    figure.savefig(path, format="png", dpi=100)
    return path


def _plot_reliability(axes, before, after, n_bins: int) -> None:
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect")
    for name, data, color, marker in (
        ("before scaling", before, "tab:red", "o"),
        ("after scaling", after, "tab:blue", "s"),
    ):
        if data is None:
            continue
        confidence, accuracy, count = reliability(*data, n_bins=n_bins)
        filled = count > 0
        label = f"{name} (ECE {ece(*data, n_bins=n_bins):.3f})"
        axes.plot(confidence[filled], accuracy[filled], marker=marker, color=color, label=label)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
             title="reliability (held-out windows)")  # fmt: skip
    axes.set_aspect("equal")
    axes.legend(loc="best", fontsize="small")


def _plot_curves(axes, curves: dict[str, list[float]]) -> None:
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        axes.plot(np.arange(1, len(values) + 1), values, marker="." if len(values) < 30 else "",
                  label=name)  # fmt: skip
    axes.set(xlabel="epoch", ylabel="loss", title="learning curves")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(fontsize="small")


def _plot_accuracy(axes, accuracy: dict[str, float]) -> None:
    names, values = list(accuracy), [float(value) for value in accuracy.values()]
    bars = axes.barh(names, values, color="tab:green")
    axes.bar_label(bars, labels=[f"{value:.0%}" for value in values], padding=2)
    axes.set(xlim=(0, 1.1), xlabel="accuracy", title="accuracy")
    axes.invert_yaxis()


def write_decoder_report(decoder: Decoder, path: Path, title: str, reliability=None,
                         accuracy: dict[str, float | None] | None = None) -> Path:  # fmt: skip
    """A decoder's training report PNG: learning curves where the decoder keeps
    them (``history``), reliability before and after temperature scaling, trial accuracies.

    Parameters
    ----------
    reliability : ((proba, targets), (proba, targets)) or None
        Held-out window probabilities and class indices before and after calibration.
    """
    history = getattr(decoder, "history", None) or []
    keys = dict.fromkeys(key for row in history for key in row if key.endswith("loss"))
    curves = {key: [row.get(key, np.nan) for row in history] for key in keys}
    before, after = reliability or (None, None)
    accuracy = {name: value for name, value in (accuracy or {}).items() if value is not None}
    return plot_training_report(
        path, title=title, curves=curves or None, reliability_before=before,
        reliability_after=after, accuracy=accuracy or None,
    )  # fmt: skip
