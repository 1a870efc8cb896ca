"""Per-subject re-centering of EEG windows, so that a population model sees every subject alike.

Both methods whiten the windows by a subject's reference covariance ``R``: ``x ↦ R^{-1/2} x``.
They differ in the reference: the arithmetic mean of the window covariances (Euclidean alignment,
He & Wu 2019, IEEE TBME 67(2)) or their Riemannian mean (re-centering, Zanini et al. 2018, IEEE
TBME 65(5)); whitening the signal by the Riemannian mean is exactly re-centering its covariances
at the identity. Online, the reference from the calibration block is fixed, so aligning a window
is one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pyriemann.geometry.mean import mean_riemann

_RIDGE = 1e-6
"""Relative ridge on each window covariance, so a flat or rank-deficient window stays invertible."""


@dataclass(frozen=True)
class Alignment:
    """A subject's whitening matrix.

    Attributes
    ----------
    kind : {"euclidean", "riemann"}
        How the reference was computed.
    matrix : array, shape (n_channels, n_channels)
        ``R^{-1/2}`` (symmetric); :meth:`apply` right-multiplies windows by it.
    """

    KINDS: ClassVar[tuple[str, ...]] = ("euclidean", "riemann")
    kind: str
    matrix: np.ndarray

    @classmethod
    def fit(cls, windows: np.ndarray, kind: str) -> Alignment:
        """Reference from one subject's windows, shape (n_windows, n_samples, n_channels)."""
        if kind not in cls.KINDS:
            raise ValueError(f"alignment kind must be 'euclidean' or 'riemann', got {kind!r}.")
        if windows.ndim != 3 or len(windows) == 0:
            raise ValueError(
                "alignment needs windows of shape (n_windows, n_samples, n_channels), got "
                f"{windows.shape}."
            )
        windows = np.asarray(windows, dtype=np.float64)
        covs = windows.transpose(0, 2, 1) @ windows / windows.shape[1]
        n = covs.shape[1]
        scale = np.trace(covs, axis1=1, axis2=2) / n
        covs = covs + (_RIDGE * np.maximum(scale, 1e-12))[:, None, None] * np.eye(n)
        reference = covs.mean(axis=0) if kind == "euclidean" else mean_riemann(covs)
        eigvals, eigvecs = np.linalg.eigh(reference)
        matrix = (eigvecs / np.sqrt(eigvals)) @ eigvecs.T
        return cls(kind, matrix)

    def apply(self, windows: np.ndarray) -> np.ndarray:
        """Aligned windows, same shape and dtype as ``windows``."""
        if windows.shape[-1] != self.matrix.shape[0]:
            raise ValueError(
                f"windows have {windows.shape[-1]} channels, the alignment {self.matrix.shape[0]}."
            )
        return (windows @ self.matrix.astype(windows.dtype, copy=False)).astype(
            windows.dtype, copy=False
        )
