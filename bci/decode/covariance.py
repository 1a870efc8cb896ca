"""Shrinkage covariance of windows, shared by the classical decoders' compiled online paths."""

from __future__ import annotations

import numpy as np


def oas_covariances(windows: np.ndarray) -> np.ndarray:
    """Oracle-approximating-shrinkage covariance of each window (Chen et al. 2010), as
    :func:`sklearn.covariance.oas` and pyRiemann's ``Covariances(estimator="oas")``.

    Parameters
    ----------
    windows : array, shape (n_windows, n_samples, n_channels)

    Returns
    -------
    covs : array, shape (n_windows, n_channels, n_channels)
    """
    _, n_samples, n_channels = windows.shape
    centered = windows - windows.mean(axis=1, keepdims=True)
    emp = centered.transpose(0, 2, 1) @ centered / n_samples
    alpha = np.mean(emp**2, axis=(1, 2))
    mu = np.trace(emp, axis1=1, axis2=2) / n_channels
    num = alpha + mu**2
    den = (n_samples + 1) * (alpha - mu**2 / n_channels)
    shrink = np.where(den == 0, 1.0, np.minimum(num / np.where(den == 0, 1, den), 1.0))
    cov = (1.0 - shrink)[:, None, None] * emp
    cov[:, np.arange(n_channels), np.arange(n_channels)] += (shrink * mu)[:, None]
    return cov
