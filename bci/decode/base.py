"""The decoder interface every decoder family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecoderInfo:
    """What a decoder was trained on; a stream that differs is refused."""

    ch_names: tuple[str, ...]
    """Channels the decoder reads, in order."""
    sfreq: float
    """Sampling rate, Hz."""
    window_s: float
    """Window length, s."""
    classes: tuple[str, ...]
    """Class labels in probability-column order."""


class Decoder(ABC):
    """A classifier of windows: fit on labeled windows, then class probabilities per window."""

    info: DecoderInfo | None = None

    @abstractmethod
    def fit(self, windows: np.ndarray, labels: np.ndarray, info: DecoderInfo) -> Decoder:
        """Train.

        Parameters
        ----------
        windows : array, shape (n_windows, n_samples, n_channels)
            Preprocessed windows, µV.
        labels : array of str, shape (n_windows,)
            Class of each window; each must be in ``info.classes``.
        info : DecoderInfo
            Channels, rate, window and classes the decoder is bound to.
        """

    @abstractmethod
    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        windows : array, shape (n_windows, n_samples, n_channels)

        Returns
        -------
        proba : array, shape (n_windows, n_classes)
            Rows sum to 1, columns in ``info.classes`` order.
        """

    @abstractmethod
    def cross_validate(self, windows: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                       info: DecoderInfo, folds: int = 5) -> float:  # fmt: skip
        """Mean accuracy of grouped cross-validation (a trial's windows stay in one fold)."""

    def check_compatible(self, ch_names: tuple[str, ...], sfreq: float) -> None:
        """Refuse a stream whose channels or rate differ from training (ValueError)."""
        if self.info is None:
            raise RuntimeError("The decoder is not fitted; call fit() before using it on a stream.")
        missing = [name for name in self.info.ch_names if name not in ch_names]
        if missing:
            raise ValueError(
                f"The stream lacks channels {missing} that the decoder was trained on; "
                "pick a stream that has them or retrain on this montage."
            )
        if abs(sfreq - self.info.sfreq) > 1e-6:
            raise ValueError(
                f"The stream runs at {sfreq:g} Hz but the decoder was trained at "
                f"{self.info.sfreq:g} Hz; resample the source or retrain."
            )
