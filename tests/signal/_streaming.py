"""Helpers for chunk-invariance tests: random chunk splits and streaming a stage over them."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
from hypothesis import strategies as st

Stage = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@st.composite
def chunk_bounds(draw: st.DrawFn, n_samples: int) -> list[tuple[int, int]]:
    """Random (start, stop) chunks covering [0, n_samples); repeated cuts give empty chunks."""
    cuts = draw(st.lists(st.integers(0, n_samples), max_size=12))
    edges = [0, *sorted(cuts), n_samples]
    if draw(st.booleans()):  # make sure an empty chunk comes first sometimes
        edges.insert(0, 0)
    return list(pairwise(edges))


def stream(
    stage: Stage, data: np.ndarray, times: np.ndarray, bounds: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``data`` to ``stage`` chunk by chunk and concatenate the outputs."""
    outputs, out_times = [], []
    for start, stop in bounds:
        out, t = stage(data[start:stop], times[start:stop])
        assert out.shape[0] == t.shape[0]
        if outputs:
            assert out.shape[1:] == outputs[0].shape[1:]
        outputs.append(out)
        out_times.append(t)
    return np.concatenate(outputs), np.concatenate(out_times)


def random_signal(
    seed: int, n_samples: int, n_channels: int, sfreq: float = 250.0
) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a per-channel DC offset, and LSL-like timestamps, s."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-50.0, 50.0, n_channels)
    data = rng.standard_normal((n_samples, n_channels)) + offsets
    times = 1000.0 + np.arange(n_samples) / sfreq
    return data, times
