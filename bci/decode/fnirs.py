"""fNIRS decoder: haemodynamic response features of HbO/HbR windows → shrinkage LDA.

Motor imagery raises HbO and lowers HbR over the contralateral motor cortex, 4–8 s after onset
(Naseer & Hong 2015, "fNIRS-based brain-computer interfaces: a review", Front. Hum. Neurosci. 9).
The classical features of that review — per channel the mean, the least-squares slope and the
peak of the concentration change over the window — are standardized and classified by a linear
discriminant with Ledoit–Wolf shrinkage.
"""

from __future__ import annotations

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from bci.decode.base import Decoder, check_windows

FEATURES = ("mean", "slope", "peak")
"""Features per channel, in the order of the feature vector (feature-major)."""


class FnirsDecoder(Decoder):
    """Mean, slope and peak of each HbO/HbR channel → standardization → shrinkage LDA.

    Parameters
    ----------
    baseline_s : float
        Length, s, of the start of each window whose mean is subtracted before the mean and peak
        (at least one sample); removes slow drift and the level left by earlier trials. 0
        disables it.
    """

    kind = "fnirs"
    inputs = ("nirs",)

    def __init__(self, baseline_s: float = 1.0, alignment: str = "none") -> None:
        super().__init__(alignment)  # accepted like every decoder; it aligns EEG only
        if not isinstance(baseline_s, int | float) or not 0.0 <= baseline_s < 1e3:
            raise ValueError(f"baseline_s must be a duration ≥ 0 s, got {baseline_s!r}.")
        self.baseline_s = float(baseline_s)

    def config(self):
        return {**super().config(), "baseline_s": self.baseline_s}

    def _projection(self, n_samples: int, sfreq: float) -> np.ndarray:
        """Rows giving the baseline-corrected mean and the slope (mol/L/s) as dot products with
        the samples; row 2 is the baseline (averaging) row."""
        baseline = np.zeros(n_samples)
        if self.baseline_s > 0:
            n_base = min(max(1, round(self.baseline_s * sfreq)), n_samples)
            baseline[:n_base] = 1.0 / n_base
        t = np.arange(n_samples) / sfreq
        t_centered = t - t.mean()
        slope = t_centered / np.sum(t_centered**2) if n_samples > 1 else np.zeros(1)
        return np.stack([np.full(n_samples, 1.0 / n_samples) - baseline, slope, baseline])

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Feature vectors of windows.

        Parameters
        ----------
        windows : array, shape (n_windows, n_samples, n_channels), mol/L (the Beer–Lambert stage)
            HbO/HbR concentration changes.

        Returns
        -------
        features : array, shape (n_windows, 3 * n_channels)
            Mean, slope (mol/L/s) and peak (the signed extreme, baseline-corrected) of each channel,
            feature-major (all means, then all slopes, then all peaks).
        """
        self._check_fitted("features()")
        windows = check_windows(windows, len(self.info.nirs.ch_names), "fNIRS")
        if windows.shape[1] != self._projection_rows.shape[1]:
            raise ValueError(
                f"fNIRS windows must have {self._projection_rows.shape[1]} samples "
                f"({self.info.nirs.window_s:g} s at {self.info.nirs.sfreq:g} Hz), "
                f"got {windows.shape[1]}."
            )
        linear = self._projection_rows @ windows  # (n_windows, 3, n_channels)
        corrected = windows - linear[:, 2:3, :]
        extreme = np.abs(corrected).argmax(axis=1)
        peak = np.take_along_axis(corrected, extreme[:, None, :], axis=1)[:, 0, :]
        return np.concatenate([linear[:, 0], linear[:, 1], peak], axis=1)

    def _fit(self, windows, targets, info, groups):
        spec = info.nirs
        self._projection_rows = self._projection(spec.n_samples, spec.sfreq)
        features = self.features(windows)
        center = features.mean(axis=0)
        scale = features.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant feature carries no information
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        lda.fit((features - center) / scale, targets)
        self._restore(
            {
                "center": center,
                "scale": scale,
                "coef": lda.coef_.T.copy(),
                "intercept": lda.intercept_.copy(),
            }
        )
        self._lda = lda

    def _arrays(self):
        return {
            "center": self._center,
            "scale": self._scale,
            "coef": self._coef,
            "intercept": self._intercept,
        }

    def _restore(self, arrays):
        self._center, self._scale = arrays["center"], arrays["scale"]
        self._coef, self._intercept = arrays["coef"], arrays["intercept"]
        spec = self.info.nirs
        self._projection_rows = self._projection(spec.n_samples, spec.sfreq)

    def _logits(self, windows):
        scores = ((self.features(windows) - self._center) / self._scale) @ self._coef
        scores += self._intercept
        if scores.shape[1] == 1:  # binary LDA: log-odds of class 1 = softmax([0, s])
            return np.column_stack([np.zeros(len(scores)), scores[:, 0]])
        return scores

    def reference_proba(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities from the sklearn LDA itself (what the fast path equals)."""
        lda = getattr(self, "_lda", None)
        if lda is None:
            raise RuntimeError("The decoder is not fitted; call fit() before reference_proba().")
        return lda.predict_proba((self.features(windows) - self._center) / self._scale)
