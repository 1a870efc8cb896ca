"""Trial-level scores: a trial's class is the one of highest mean probability over its windows."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from bci.train.epochs import TrialWindows


def trial_proba(proba: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability over the windows of each trial: (trial ids, shape (n_trials,
    n_classes))."""
    trials, index = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(trials), proba.shape[1]))
    np.add.at(sums, index, proba)
    return trials, sums / np.bincount(index)[:, None]


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    z = norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def score_trials(proba: np.ndarray, data: TrialWindows, classes: tuple[str, ...]) -> dict:
    """Trial-level accuracy, chance level, 95 % interval and confusion matrix."""
    trials, mean = trial_proba(proba, data.groups)
    truth = data.trial_labels
    predicted = np.asarray(classes)[mean.argmax(axis=1)]
    correct = int(np.sum(predicted == truth))
    counts = {label: int(np.sum(truth == label)) for label in classes}
    confusion = [[int(np.sum((truth == a) & (predicted == b))) for b in classes] for a in classes]
    return {
        "accuracy": correct / len(trials),
        "n_trials": len(trials),
        "chance": max(counts.values()) / len(trials),
        "chance_method": "majority-class share of the scored trials",
        "chance_uniform": 1 / len(classes),
        "ci95": list(wilson_interval(correct, len(trials))),
        "ci95_method": "Wilson score interval",
        "classes": list(classes),
        "n_trials_per_class": counts,
        "confusion": confusion,
        "confusion_axes": "rows: true class, columns: predicted class",
        "n_windows": len(data.labels),
        "n_trials_dropped": data.n_dropped,
    }
