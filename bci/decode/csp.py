"""Common spatial patterns + shrinkage LDA: the classical motor-imagery decoder.

CSP (Blankertz et al. 2008, IEEE Signal Process. Mag. 25(1)) finds spatial filters whose output
variance differs most between classes; the log-variances of the filtered window feed a linear
discriminant with Ledoit–Wolf shrinkage. Two classes use the generalized eigenproblem of the class
covariances, more classes their approximate joint diagonalization (pyRiemann).
"""

from __future__ import annotations

import numpy as np
from pyriemann.estimation import Covariances
from pyriemann.spatialfilters import CSP
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import Pipeline, make_pipeline

from bci.decode.base import Decoder, check_windows
from bci.decode.covariance import oas_covariances


class CspLdaDecoder(Decoder):
    """Shrinkage covariance → CSP log-variance → shrinkage LDA.

    Parameters
    ----------
    n_filters : int
        CSP filters kept (the most discriminative ones; at most the number of channels).
    alignment : {"none", "euclidean", "riemann"}
        See :class:`~bci.decode.base.Decoder`.
    """

    kind = "csp"

    def __init__(self, n_filters: int = 6, alignment: str = "none") -> None:
        super().__init__(alignment)
        if not isinstance(n_filters, int) or isinstance(n_filters, bool) or n_filters < 1:
            raise ValueError(f"n_filters must be a positive integer, got {n_filters!r}.")
        self.n_filters = n_filters
        self._pipeline: Pipeline | None = None

    def config(self):
        return {**super().config(), "n_filters": self.n_filters}

    def _make_pipeline(self) -> Pipeline:
        # OAS keeps each window's covariance well conditioned on short windows; the LDA's
        # Ledoit–Wolf shrinkage keeps it stable with few calibration trials.
        return make_pipeline(
            Covariances(estimator="oas"),
            CSP(nfilter=self.n_filters, metric="euclid", log=True),
            LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
        )

    def _fit(self, windows, targets, info, groups):
        windows = check_windows(windows, len(info.eeg.ch_names), "EEG")
        self._pipeline = self._make_pipeline().fit(windows.transpose(0, 2, 1), targets)
        _, csp, lda = (step for _, step in self._pipeline.steps)
        self._restore(
            {
                "filters": csp.filters_.T.copy(),
                "coef": lda.coef_.T.copy(),
                "intercept": lda.intercept_.copy(),
            }
        )

    def _arrays(self):
        return {"filters": self._filters, "coef": self._coef, "intercept": self._intercept}

    def _restore(self, arrays):
        self._filters, self._coef, self._intercept = (
            arrays["filters"], arrays["coef"], arrays["intercept"]
        )  # fmt: skip

    # The online path: the sklearn pipeline spends milliseconds validating one window; this is
    # the same arithmetic (filter variance diag(Wᵀ C W), its log, the LDA's affine map) on the
    # stored arrays. A test holds the two equal.
    def _logits(self, windows):
        windows = check_windows(windows, self._filters.shape[0], "EEG")
        covs = oas_covariances(windows)
        power = np.sum((covs @ self._filters) * self._filters, axis=1)
        scores = np.log(power) @ self._coef + self._intercept
        if scores.shape[1] == 1:  # binary LDA: log-odds of class 1 = softmax([0, s])
            return np.column_stack([np.zeros(len(scores)), scores[:, 0]])
        return scores

    def reference_proba(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities from the pyRiemann/sklearn pipeline itself (what the fast path equals)."""
        if self._pipeline is None:
            raise RuntimeError("The decoder is not fitted; call fit() before reference_proba().")
        aligned = np.asarray(self._align(windows))
        return self._pipeline.predict_proba(aligned.transpose(0, 2, 1))
