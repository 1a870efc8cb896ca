"""A chain of signal stages run one after another on each chunk."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

Stage = Callable[[NDArray[np.float64], NDArray[np.float64]], tuple[NDArray, NDArray]]


class Pipeline:
    """Run stages in order, each on the previous one's ``(data, times)``.

    Parameters
    ----------
    stages : sequence of stage
        Objects called as ``stage(data, times) -> (data_out, times_out)``; an empty sequence
        passes chunks through unchanged.

    Notes
    -----
    A pipeline is itself a stage: chunk-invariant when its stages are, and chained
    pipelines nest.
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages: tuple[Stage, ...] = tuple(stages)
        """The stages, in call order."""
        for index, stage in enumerate(self.stages):
            if not callable(stage):
                raise TypeError(
                    f"stages[{index}] must be a stage called as stage(data, times), "
                    f"got {stage!r} of type {type(stage).__name__}"
                )

    @property
    def ch_names_out(self) -> tuple[str, ...] | None:
        """Names of the output channels, or None when they are not known.

        The names come from the last stage that sets ``ch_names_out`` (stages that keep their
        channels, such as filters, do not have it and pass names through).
        """
        for stage in reversed(self.stages):
            if hasattr(stage, "ch_names_out"):
                return stage.ch_names_out
        return None

    def reset(self) -> None:
        """Reset every stage that keeps state (those with a ``reset()`` method)."""
        for stage in self.stages:
            reset = getattr(stage, "reset", None)
            if callable(reset):
                reset()

    def __call__(
        self, data: NDArray[np.float64], times: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Push one chunk through every stage.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels)
            Input chunk, in the first stage's unit.
        times : array, shape (n_samples,), s
            LSL timestamps.

        Returns
        -------
        data_out : array
            The last stage's output (its shape and unit are the last stage's).
        times_out : array, s
            The last stage's timestamps.
        """
        for stage in self.stages:
            data, times = stage(data, times)
        return data, times
