"""Tangent-space + logistic-regression decoder (pyRiemann): the classical baseline."""

from __future__ import annotations

import numpy as np
from pyriemann.estimation import Covariances
from pyriemann.tangentspace import TangentSpace
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline

from bci.decode.base import Decoder, DecoderInfo


class TangentSpaceDecoder(Decoder):
    """Shrinkage covariance → Riemannian tangent space → logistic regression.

    Parameters
    ----------
    c : float
        Inverse L2 regularization of the logistic regression.
    """

    def __init__(self, c: float = 1.0) -> None:
        self.c = c
        self._pipeline: Pipeline | None = None

    def _make_pipeline(self) -> Pipeline:
        # OAS shrinkage keeps covariances well conditioned on short windows
        return make_pipeline(
            Covariances(estimator="oas"),
            TangentSpace(metric="riemann"),
            LogisticRegression(C=self.c, max_iter=1000),
        )

    @staticmethod
    def _channels_first(windows: np.ndarray) -> np.ndarray:
        if windows.ndim != 3:
            raise ValueError(
                f"windows must have shape (n_windows, n_samples, n_channels), got {windows.shape}."
            )
        return np.ascontiguousarray(windows.transpose(0, 2, 1))

    def fit(self, windows, labels, info):
        labels = np.asarray(labels)
        unknown = sorted(set(labels) - set(info.classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(info.classes)}.")
        if len(set(labels)) < 2:
            raise ValueError("fit needs windows of at least two classes.")
        targets = np.array([info.classes.index(label) for label in labels])
        self._pipeline = self._make_pipeline().fit(self._channels_first(windows), targets)
        self.info = info
        return self

    def cross_validate(self, windows, labels, groups, info: DecoderInfo, folds: int = 5) -> float:
        """Mean accuracy of ``folds``-fold cross-validation, keeping each trial's windows together.

        Parameters
        ----------
        windows : array, shape (n_windows, n_samples, n_channels)
        labels : array of str, shape (n_windows,)
        groups : array of int, shape (n_windows,)
            Trial of each window.
        """
        targets = np.array([info.classes.index(label) for label in labels])
        n_trials = len(set(groups))
        cv = StratifiedGroupKFold(n_splits=min(folds, n_trials // 2), shuffle=True, random_state=0)
        scores = cross_val_score(
            self._make_pipeline(), self._channels_first(windows), targets, groups=groups, cv=cv
        )
        return float(np.mean(scores))

    def predict_proba(self, windows):
        if self._pipeline is None:
            raise RuntimeError("The decoder is not fitted; call fit() before predict_proba().")
        return self._pipeline.predict_proba(self._channels_first(windows))
