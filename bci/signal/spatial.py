"""Spatial stages: common average reference and channel picking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bci.signal._checks import (
    FloatArray,
    check_chunk,
    check_n_channels,
    check_names,
    missing_names_error,
)


@dataclass(frozen=True)
class CommonAverageReferenceSettings:
    """Settings of a common average reference."""

    exclude: tuple[str, ...] = ()
    """Channels left out of the average and passed through unchanged (bad channels, EOG,
    triggers, a sample-index channel). Needs the stage's ``ch_names``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", check_names("exclude", self.exclude))


class CommonAverageReference:
    """Subtract, at every sample, the mean over the referenced channels.

    Parameters
    ----------
    settings : CommonAverageReferenceSettings, optional
        Which channels to exclude. By default every channel is referenced.
    ch_names : sequence of str, optional
        The input channels, in stream order. Required when ``settings.exclude`` is not empty;
        when given, every chunk must have this many channels.

    Notes
    -----
    Stateless: any chunk split gives the same output, and without ``ch_names`` any number of
    channels is accepted. Excluded channels are copied unchanged.
    """

    def __init__(
        self,
        settings: CommonAverageReferenceSettings | None = None,
        ch_names: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else CommonAverageReferenceSettings()
        self._ch_names = None if ch_names is None else check_names("ch_names", ch_names)
        self._mask: FloatArray | None = None
        self._weights: FloatArray | None = None
        if self._ch_names is None:
            if self.settings.exclude:
                raise ValueError(
                    f"ch_names is required to exclude channels {list(self.settings.exclude)}, "
                    "got None"
                )
            return
        missing = [name for name in self.settings.exclude if name not in self._ch_names]
        if missing:
            raise missing_names_error("exclude", missing, self._ch_names)
        mask = np.array([name not in self.settings.exclude for name in self._ch_names], float)
        if not mask.any():
            raise ValueError(
                f"exclude must leave at least one channel to average, got every channel: "
                f"{list(self.settings.exclude)}"
            )
        self._mask = mask
        self._weights = mask / mask.sum()

    def __call__(self, data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Re-reference one chunk.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels), V
            Samples.
        times : array, shape (n_samples,), s
            LSL timestamps.

        Returns
        -------
        referenced : array, shape (n_samples, n_channels), V
            Samples minus the average of the referenced channels (excluded ones unchanged).
        times : array, shape (n_samples,), s
            The same timestamps.
        """
        data, times = check_chunk(data, times)
        if self._mask is None or self._weights is None:
            mean = data.mean(axis=1, keepdims=True)
            return data - mean, times
        check_n_channels(self._mask.shape[0], data, "CommonAverageReference")
        # One (n_samples, n_channels) allocation: the outer product, then subtract in place.
        out = np.multiply.outer(data @ self._weights, self._mask)
        np.subtract(data, out, out=out)
        return out, times


class ChannelPicker:
    """Keep the named channels, in the order given.

    Parameters
    ----------
    ch_names_in : sequence of str
        The input channels, in stream order.
    picks : sequence of str
        The channels to keep, in output order.

    Raises
    ------
    ValueError
        When ``picks`` is empty, repeats a name, or names channels that ``ch_names_in`` lacks
        (the message lists the missing and the available names).
    """

    def __init__(self, ch_names_in: Sequence[str], picks: Sequence[str]) -> None:
        self.ch_names_in = check_names("ch_names_in", ch_names_in)
        picked = check_names("picks", picks)
        if not picked:
            raise ValueError("picks must name at least one channel, got none")
        missing = [name for name in picked if name not in self.ch_names_in]
        if missing:
            raise missing_names_error("picks", missing, self.ch_names_in)
        self.ch_names_out: tuple[str, ...] = picked
        """The output channels, in output order."""
        self.indices = np.array([self.ch_names_in.index(name) for name in picked], np.intp)
        """array, shape (n_picks,): the input column of each output channel."""
        self.indices.setflags(write=False)

    def __call__(self, data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Pick channels from one chunk.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels_in)
            Samples.
        times : array, shape (n_samples,), s
            LSL timestamps.

        Returns
        -------
        picked : array, shape (n_samples, n_picks)
            The picked channels, in ``picks`` order.
        times : array, shape (n_samples,), s
            The same timestamps.
        """
        data, times = check_chunk(data, times)
        check_n_channels(len(self.ch_names_in), data, "ChannelPicker")
        return data[:, self.indices], times
