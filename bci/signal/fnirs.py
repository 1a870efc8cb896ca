"""fNIRS stages: raw intensity → optical density → haemoglobin (modified Beer–Lambert law).

Channel names follow MNE-Python: ``"S1_D1 760"``, ``"S1_D1 850"`` (source 1, detector 1, one
channel per wavelength in nm, the wavelengths of a source–detector pair consecutive) in, and
``"S1_D1 hbo"``, ``"S1_D1 hbr"`` out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bci.signal._checks import (
    FloatArray,
    check_chunk,
    check_int_range,
    check_n_channels,
    check_names,
    check_positive,
)
from bci.signal._extinction import extinction_coefficients

_CHANNEL_RE = re.compile(r"(S\d+_D\d+) (\d+(?:\.\d+)?)")
# MNE's beer_lambert_law multiplies the decadic extinction coefficients by 2.303, its rounding
# of ln(10) (relative error 1.8e-4); we keep it so that online values equal MNE's offline ones.
_LN10_AS_IN_MNE = 2.303
_MAX_DISTANCE_CM = 10.0


@dataclass(frozen=True)
class OpticalDensitySettings:
    """Settings of the intensity → optical density conversion."""

    baseline_samples: int = 1
    """How many first samples average into the reference intensity I0 of each channel. The
    stage holds back its output until it has them all."""

    min_intensity: float = float(np.finfo(np.float64).tiny)
    """Intensities below this (zero or negative ones from a saturated or unplugged optode) are
    clipped to it before the log, in the stream's intensity unit; the clips are counted."""

    def __post_init__(self) -> None:
        check_int_range("baseline_samples", self.baseline_samples, 1)
        check_positive("min_intensity", self.min_intensity)


class OpticalDensity:
    """Optical density ``OD = -ln(I / I0)`` per channel, as MNE's ``optical_density``.

    Parameters
    ----------
    settings : OpticalDensitySettings
        Baseline length and clipping floor.

    Notes
    -----
    MNE divides by the mean of the whole recording; online, ``I0`` is the mean of the first
    ``baseline_samples`` samples (after clipping), so a baseline as long as the recording gives
    MNE's result. Until the baseline is complete the stage returns no samples; the chunk that
    completes it returns every held-back sample. The state resets when the number of channels
    changes (or on :meth:`reset`); an empty chunk leaves it untouched.
    """

    def __init__(self, settings: OpticalDensitySettings | None = None) -> None:
        self.settings = settings if settings is not None else OpticalDensitySettings()
        self._n_channels = -1
        self._held = np.empty((0, 0))
        self._held_times = np.empty(0)
        self._n_held = 0
        self._i0: FloatArray | None = None
        self._n_clipped = 0

    @property
    def n_clipped(self) -> int:
        """Intensity values clipped to ``min_intensity`` since the last reset."""
        return self._n_clipped

    @property
    def baseline(self) -> FloatArray | None:
        """array, shape (n_channels,): the reference intensities I0, or None until known."""
        return None if self._i0 is None else self._i0.copy()

    def reset(self) -> None:
        """Forget the baseline and the clip count; the next samples form a new baseline."""
        self._n_channels = -1
        self._held = np.empty((0, 0))
        self._held_times = np.empty(0)
        self._n_held = 0
        self._i0 = None
        self._n_clipped = 0

    def __call__(self, data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Convert one chunk of intensities.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels)
            Raw light intensities, any unit.
        times : array, shape (n_samples,), s
            LSL timestamps.

        Returns
        -------
        od : array, shape (n_out, n_channels), unitless
            Optical densities; ``n_out`` is ``n_samples`` once the baseline is known, 0 while
            it is being collected, and includes the held-back samples when it completes.
        times : array, shape (n_out,), s
            Timestamps of the returned samples.
        """
        data, times = check_chunk(data, times)
        n_samples, n_channels = data.shape
        if n_samples == 0:
            return np.empty((0, n_channels)), times
        if n_channels != self._n_channels:
            self.reset()
            self._n_channels = n_channels
            self._held = np.empty((self.settings.baseline_samples, n_channels))
            self._held_times = np.empty(self.settings.baseline_samples)
        floor = self.settings.min_intensity
        self._n_clipped += int(np.count_nonzero(data < floor))
        od = np.maximum(data, floor)
        if self._i0 is None:
            take = min(n_samples, self.settings.baseline_samples - self._n_held)
            self._held[self._n_held : self._n_held + take] = od[:take]
            self._held_times[self._n_held : self._n_held + take] = times[:take]
            self._n_held += take
            if self._n_held < self.settings.baseline_samples:
                return np.empty((0, n_channels)), np.empty(0)
            self._i0 = self._held.mean(axis=0)
            od = np.concatenate([self._held, od[take:]])
            times = np.concatenate([self._held_times, times[take:]])
            self._held = np.empty((0, n_channels))  # no longer needed
        od /= self._i0
        np.log(od, out=od)
        np.negative(od, out=od)
        return od, times


def parse_fnirs_channels(ch_names: Sequence[str]) -> list[tuple[str, list[int], list[float]]]:
    """Group MNE-style fNIRS channel names into source–detector pairs.

    Parameters
    ----------
    ch_names : sequence of str
        Names such as ``"S1_D1 760"``; the channels of a pair must be consecutive.

    Returns
    -------
    pairs : list of (str, list of int, list of float)
        For each pair in order: its name (``"S1_D1"``), its channels' indices, and their
        wavelengths, nm.
    """
    names = check_names("ch_names", ch_names)
    if not names:
        raise ValueError("ch_names must hold at least one fNIRS channel pair, got none")
    pairs: list[tuple[str, list[int], list[float]]] = []
    for index, name in enumerate(names):
        match = _CHANNEL_RE.fullmatch(name)
        if match is None:
            raise ValueError(
                f"ch_names[{index}] must look like 'S1_D1 760' (source_detector wavelength_nm), "
                f"got {name!r}"
            )
        pair, wavelength = match.group(1), float(match.group(2))
        if pairs and pairs[-1][0] == pair:
            pairs[-1][1].append(index)
            pairs[-1][2].append(wavelength)
        elif any(seen == pair for seen, _, _ in pairs):
            raise ValueError(
                f"ch_names must list the wavelengths of a source-detector pair consecutively; "
                f"{pair} reappears at ch_names[{index}] = {name!r}"
            )
        else:
            pairs.append((pair, [index], [wavelength]))
    for pair, _, wavelengths in pairs:
        if len(set(wavelengths)) < 2:
            raise ValueError(
                f"ch_names must give each source-detector pair at least two wavelengths; "
                f"{pair} has {wavelengths} nm"
            )
    return pairs


def _per_item(name: str, value: float | Sequence[float], n: int, what: str) -> tuple[float, ...]:
    """A positive float for each of ``n`` items, from one float or a sequence of ``n``."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"{name} must be one number or {n} numbers (one per {what}), "
                f"got {len(value)}: {list(value)!r}"
            )
        return tuple(check_positive(f"{name}[{i}]", v) for i, v in enumerate(value))
    return (check_positive(name, value),) * n


@dataclass(frozen=True)
class BeerLambertSettings:
    """Settings of the modified Beer–Lambert law."""

    ch_names: tuple[str, ...]
    """Optical-density channels, MNE-style (``"S1_D1 760"``), pairs consecutive."""

    distances_cm: float | tuple[float, ...]
    """Source–detector distance, cm: one for every pair, or one per pair in order (0 to 10 cm;
    MNE's ``sd_distances`` are in metres)."""

    ppf: float | tuple[float, ...] = 6.0
    """Partial pathlength factor, unitless (MNE's default 6.0): one for all wavelengths, or one
    per distinct wavelength in ascending order, as MNE's ``ppf``."""

    def __post_init__(self) -> None:
        pairs = parse_fnirs_channels(self.ch_names)
        object.__setattr__(self, "ch_names", tuple(self.ch_names))
        distances = _per_item("distances_cm", self.distances_cm, len(pairs), "source-detector pair")
        too_far = [d for d in distances if d > _MAX_DISTANCE_CM]
        if too_far:
            raise ValueError(
                f"distances_cm must be at most {_MAX_DISTANCE_CM:g} cm (are they in mm?), "
                f"got {too_far}"
            )
        if not isinstance(self.distances_cm, (int, float)):
            object.__setattr__(self, "distances_cm", distances)
        wavelengths = sorted({w for _, _, pair_wls in pairs for w in pair_wls})
        for w in wavelengths:
            extinction_coefficients(w)  # raises for a wavelength outside the table
        ppf = _per_item("ppf", self.ppf, len(wavelengths), f"wavelength {wavelengths} nm")
        if not isinstance(self.ppf, (int, float)):
            object.__setattr__(self, "ppf", ppf)


class BeerLambert:
    """Optical density → oxy- and deoxyhaemoglobin concentration changes, as MNE.

    For each source–detector pair, ``OD(λ) = 2.303 · ε(λ) · d · ppf(λ) · c`` with ``ε`` the
    molar extinction coefficients of HbO2 and Hb (Prahl's table,
    https://omlc.org/spectra/hemoglobin/summary.html, cm⁻¹/M, linearly interpolated), ``d`` the
    distance in cm and ``c`` = (ΔHbO, ΔHbR) in mol/L; ``c`` is recovered by the pseudo-inverse
    (least squares with more than two wavelengths), exactly as
    ``mne.preprocessing.nirs.beer_lambert_law`` (including its 2.303 for ln 10).

    Parameters
    ----------
    settings : BeerLambertSettings
        Channel names, source–detector distances and partial pathlength factors.

    Notes
    -----
    Stateless; the whole conversion is one precomputed matrix, so any chunk split gives the
    same output.
    """

    def __init__(self, settings: BeerLambertSettings) -> None:
        self.settings = settings
        pairs = parse_fnirs_channels(settings.ch_names)
        n_pairs = len(pairs)
        distances = _per_item("distances_cm", settings.distances_cm, n_pairs, "pair")
        wavelengths = sorted({w for _, _, pair_wls in pairs for w in pair_wls})
        ppf = dict(
            zip(wavelengths, _per_item("ppf", settings.ppf, len(wavelengths), "wl"), strict=True)
        )
        self.ch_names_out: tuple[str, ...] = tuple(
            f"{pair} {chromophore}" for pair, _, _ in pairs for chromophore in ("hbo", "hbr")
        )
        """Output channels: ``"<pair> hbo"``, ``"<pair> hbr"`` per pair, mol/L."""
        matrix = np.zeros((len(settings.ch_names), 2 * n_pairs))
        for p, (_, indices, pair_wls) in enumerate(pairs):
            extinction = np.array([extinction_coefficients(w) for w in pair_wls])
            path = np.array([_LN10_AS_IN_MNE * distances[p] * ppf[w] for w in pair_wls])
            matrix[indices, 2 * p : 2 * p + 2] = np.linalg.pinv(extinction * path[:, None]).T
        self.matrix = matrix
        """array, shape (n_channels_in, 2 * n_pairs): ``hb = od @ matrix``, mol/L per OD."""
        self.matrix.setflags(write=False)

    def __call__(self, data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Convert one chunk of optical densities.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels_in), unitless
            Optical densities, channels as ``settings.ch_names``.
        times : array, shape (n_samples,), s
            LSL timestamps.

        Returns
        -------
        hb : array, shape (n_samples, 2 * n_pairs), mol/L
            Concentration changes, channels as ``ch_names_out``.
        times : array, shape (n_samples,), s
            The same timestamps.
        """
        data, times = check_chunk(data, times)
        check_n_channels(self.matrix.shape[0], data, "BeerLambert")
        return data @ self.matrix, times
