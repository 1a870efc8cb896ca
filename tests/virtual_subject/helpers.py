"""Signal measurements shared by the virtual-subject tests."""

from __future__ import annotations

import numpy as np
from scipy import signal


def band_power(x: np.ndarray, sfreq: float, low: float, high: float) -> np.ndarray:
    """Mean Welch power in ``low``–``high`` Hz of each column of ``x``, µV²/Hz."""
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=min(len(x), int(2 * sfreq)), axis=0)
    band = (freqs >= low) & (freqs <= high)
    return psd[band].mean(axis=0)


def remove_sinusoid(x: np.ndarray, sfreq: float, freq: float) -> np.ndarray:
    """``x`` minus its least-squares sinusoid at ``freq`` (removes a tACS artifact)."""
    t = np.arange(len(x)) / sfreq
    basis = np.column_stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)])
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return x - basis @ coef


def _spd_map(matrices: np.ndarray, func) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrices)
    return (vectors * func(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


class TangentSpace:
    """Minimal tangent-space mapping of covariance matrices (Barachant et al. 2012).

    The reference point is the log-Euclidean mean of the training covariances; each matrix is
    whitened by it, mapped with the matrix logarithm, and its upper triangle (off-diagonal
    terms × √2) is the feature vector. Stands in for pyriemann's ``TangentSpace`` so that the
    tests do not import torch (pyriemann's backend), which costs seconds.
    """

    def fit(self, covariances: np.ndarray, y=None) -> TangentSpace:
        reference = _spd_map(_spd_map(covariances, np.log).mean(axis=0), np.exp)
        self.whitener_ = _spd_map(reference, lambda v: v**-0.5)
        return self

    def transform(self, covariances: np.ndarray) -> np.ndarray:
        tangent = _spd_map(self.whitener_ @ covariances @ self.whitener_, np.log)
        rows, cols = np.triu_indices(covariances.shape[-1])
        weights = np.where(rows == cols, 1.0, np.sqrt(2.0))
        return tangent[:, rows, cols] * weights

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **params) -> TangentSpace:
        return self


def shrunk_covariances(windows: np.ndarray) -> np.ndarray:
    """OAS-shrunk covariance of each window, windows shape (n, n_channels, n_times)."""
    from sklearn.covariance import oas

    return np.array([oas(window.T)[0] for window in windows])
