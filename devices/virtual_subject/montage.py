"""Electrode names, positions and the smooth distance-based leadfield of the virtual head.

Positions come from MNE's template 10-05 montage (``standard_1005``, renamed ``colin27_1005`` in
MNE 1.13), in metres, head coordinates (x right, y front, z up).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CHANNELS_8 = ("C3", "Cz", "C4", "FC3", "FC4", "Pz", "Oz", "Fz")
"""Smallest set: sensorimotor strip for imagery plus a midline posterior site for alpha."""

CHANNELS_32 = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7", "C3", "Cz",
    "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4", "P8", "PO3", "POz", "PO4",
    "O1", "Oz", "O2", "FCz",
)  # fmt: skip
"""Default 32-channel 10-20 cap (the common actiCAP/BrainAmp set with FCz)."""

CHANNELS_64 = (
    "Fp1", "AF7", "AF3", "F1", "F3", "F5", "F7", "FT7", "FC5", "FC3", "FC1", "C1", "C3", "C5",
    "T7", "TP7", "CP5", "CP3", "CP1", "P1", "P3", "P5", "P7", "P9", "PO7", "PO3", "O1", "Iz",
    "Oz", "POz", "Pz", "CPz", "Fpz", "Fp2", "AF8", "AF4", "AFz", "Fz", "F2", "F4", "F6", "F8",
    "FT8", "FC6", "FC4", "FC2", "FCz", "Cz", "C2", "C4", "C6", "T8", "TP8", "CP6", "CP4", "CP2",
    "P2", "P4", "P6", "P8", "P10", "PO8", "PO4", "O2",
)  # fmt: skip
"""Standard 64-channel 10-10 set (BioSemi 64 order)."""

# Order in which smaller caps gain electrodes: sensorimotor first (imagery), then eyes, occipital,
# temporal and the rest of the 32 set.
_PRIORITY_32 = (
    *CHANNELS_8, "FC1", "FC2", "CP1", "CP2", "FC5", "FC6", "CP5", "CP6", "Fp1", "Fp2", "O1", "O2",
    "T7", "T8", "F3", "F4", "P3", "P4", "POz", "F7", "F8", "P7", "P8", "PO3", "PO4", "FCz",
)  # fmt: skip

# Ear/mastoid sites are reference positions, not cap electrodes.
_NOT_CAP = {"A1", "A2", "M1", "M2"}


@lru_cache(maxsize=1)
def montage_positions() -> dict[str, np.ndarray]:
    """Positions of every 10-05 electrode of the template head.

    Returns
    -------
    positions : dict of str to array, shape (3,)
        Electrode name to position, m.
    """
    import mne  # deferred: importing MNE takes a second and only this needs it

    name = "standard_1005"
    if "colin27_1005" in mne.channels.get_builtin_montages():
        name = "colin27_1005"  # same positions; the old name is deprecated from MNE 1.13
    montage = mne.channels.make_standard_montage(name)
    positions = montage.get_positions()["ch_pos"]
    return {ch: np.asarray(pos, dtype=float) for ch, pos in positions.items()}


def position(name: str, parameter: str = "electrode") -> np.ndarray:
    """Position of a 10-05 electrode, m, matching names case-insensitively.

    Parameters
    ----------
    name : str
        Electrode name, e.g. ``"C3"``.
    parameter : str
        Name of the caller's parameter, used in the error message.

    Returns
    -------
    pos : array, shape (3,)
    """
    positions = montage_positions()
    lookup = {key.lower(): key for key in positions}
    if not isinstance(name, str) or name.lower() not in lookup:
        raise ValueError(
            f"{parameter} must be a 10-05 electrode name such as 'C3' or 'Oz', got {name!r}"
        )
    return positions[lookup[name.lower()]]


def max_channels() -> int:
    """Largest supported cap: every 10-05 electrode except ear/mastoid sites."""
    return sum(1 for name in montage_positions() if name not in _NOT_CAP)


def select_channels(n_channels: int) -> tuple[str, ...]:
    """Names of an ``n_channels`` cap.

    32 and 64 give ``CHANNELS_32`` and ``CHANNELS_64``; other counts grow the nearest smaller set
    by the next set's electrodes (8 → 32 → 64 → the rest of the 10-05 system), so C3, Cz and C4
    are always present.

    Parameters
    ----------
    n_channels : int
        Number of EEG channels, 3 to ``max_channels()``.

    Returns
    -------
    names : tuple of str
    """
    limit = max_channels()
    if isinstance(n_channels, bool) or not isinstance(n_channels, int | np.integer):
        raise TypeError(f"n_channels must be an int, got {type(n_channels).__name__}")
    if not 3 <= n_channels <= limit:
        raise ValueError(f"n_channels must be between 3 and {limit}, got {n_channels}")
    if n_channels == 32:
        return CHANNELS_32
    if n_channels == 64:
        return CHANNELS_64
    if n_channels < 32:
        chosen = set(_PRIORITY_32[:n_channels])
        # Front-to-back, left-to-right like a cap, rather than the priority order.
        return tuple(c for c in montage_positions() if c in chosen)
    if n_channels < 64:
        extra = [c for c in CHANNELS_64 if c not in CHANNELS_32]
        return (*CHANNELS_32, *extra[: n_channels - 32])
    rest = [c for c in montage_positions() if c not in CHANNELS_64 and c not in _NOT_CAP]
    return (*CHANNELS_64, *rest[: n_channels - 64])


def channel_positions(names: tuple[str, ...]) -> np.ndarray:
    """Positions of ``names``, shape (n_channels, 3), m."""
    return np.array([position(name, "channel name") for name in names])


def gaussian_leadfield(
    electrodes: np.ndarray, source: np.ndarray, width_m: float, reference: np.ndarray | None = None
) -> np.ndarray:
    """Scalp gain of one cortical source: a Gaussian of electrode-to-source distance.

    Volume conduction through CSF, skull and scalp smears a cortical source over several
    centimetres of scalp (Nunez & Srinivasan 2006), which a Gaussian of the distance between the
    electrode and the source's scalp projection captures smoothly.

    Parameters
    ----------
    electrodes : array, shape (n_channels, 3)
        Electrode positions, m.
    source : array, shape (3,)
        Source position projected to the scalp, m.
    width_m : float
        Standard deviation of the Gaussian, m.
    reference : array, shape (3,), optional
        Electrode at which the gain is normalised to 1 (e.g. Fp1 for the eyes), so that
        amplitude parameters read as "µV at that electrode"; None leaves the peak gain at 1.

    Returns
    -------
    gain : array, shape (n_channels,)
    """

    def _gain(points: np.ndarray) -> np.ndarray:
        dist2 = np.sum((points - source) ** 2, axis=-1)
        return np.exp(-dist2 / (2 * width_m**2))

    gain = _gain(electrodes)
    return gain if reference is None else gain / _gain(reference[None])[0]
