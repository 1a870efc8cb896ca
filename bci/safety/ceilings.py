"""Hard per-modality ceilings. Literature values; not editable by any protocol.

A protocol's session limits are accepted only at or below these (``bci check`` refuses others),
and the governor clamps every command to the stricter of the two.

Daily ceilings bound one participant's dose over any rolling 24 h, across sessions and restarts
(the dose ledger, :mod:`bci.safety.ledger`). tDCS: Bikson et al. 2016 found no serious
adverse effect up to 40 min, 4 mA and 7.2 C in one session, and the evidence it reviews for
several sessions within a day is thin, so the per-session ceilings stand for the day (at most
one full-dose session per 24 h). The other modalities have no published daily ceiling; theirs
are infinite, and a site sets its own (:mod:`bci.safety.site`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

_INF = math.inf


@dataclass(frozen=True)
class HardCeiling:
    """The most any session may ask of one stimulation modality."""

    max_amplitude: float
    """Largest |amplitude|: mA for tES (tACS: peak) and pulse trains, % of maximum stimulator
    output for TMS."""
    unit: str
    """Unit of ``max_amplitude``."""
    max_slew_per_s: float
    """Fastest rise of the amplitude, unit/s (inf: not slew-limited)."""
    source: str
    """Where the values come from."""
    signed: bool = False
    """Whether the amplitude may be negative (tDCS polarity)."""
    max_session_s: float = _INF
    """Longest stimulation time per session (output on), s."""
    max_charge_mc: float = _INF
    """Largest total charge per session, mC (∫|I| dt)."""
    frequency_hz: tuple[float, float] | None = None
    """Allowed stimulation frequency, Hz; None: the modality has none (0)."""
    max_pulse_rate_hz: float = _INF
    """Most pulses per second."""
    pulse_width_us: tuple[float, float] | None = None
    """Allowed pulse width per phase, µs."""
    max_charge_density_uc_cm2: float = _INF
    """Largest charge per phase per electrode area, µC/cm²."""
    max_daily_s: float = _INF
    """Longest stimulation time per participant over any rolling 24 h (all sessions), s."""
    max_daily_charge_mc: float = _INF
    """Largest total charge per participant over any rolling 24 h, mC."""
    max_daily_pulses: float = _INF
    """Most pulses per participant over any rolling 24 h (a count; inf: no ceiling)."""


TES_SLEW_MA_PER_S = 1.0
"""tES slew ceiling: 1 mA/s, i.e. 0 → 2 mA in ≥ 2 s. Conventional tES ramps take 10–30 s and
faster onsets and offsets cause skin sensations and phosphenes (Woods et al. 2016, Clin
Neurophysiol 127:1031); 1 mA/s is the fastest rise a closed loop may use and still stay below
the step a participant notices as a jolt. Falls are bounded by it too, except the watchdog's
ramp (≤ 1 s) and the emergency stop (immediate), where reaching zero is the safety action."""

HARD_CEILINGS = MappingProxyType(
    {
        "tdcs": HardCeiling(
            4.0, "mA", TES_SLEW_MA_PER_S,
            "Bikson et al. 2016, Brain Stimul 9:641: ≤ 4 mA, ≤ 40 min, ≤ 7.2 C per session",
            signed=True, max_session_s=40 * 60.0, max_charge_mc=7200.0,
            max_daily_s=40 * 60.0, max_daily_charge_mc=7200.0,
        ),
        "tacs": HardCeiling(
            2.0, "mA", TES_SLEW_MA_PER_S,
            "Antal et al. 2017, Clin Neurophysiol 128:1774: ≤ 2 mA peak, 0.1–150 Hz",
            frequency_hz=(0.1, 150.0),
        ),
        "tms": HardCeiling(
            100.0, "%MSO", _INF,
            "Rossi et al. 2021, Clin Neurophysiol 132:269: single pulses ≤ 1 Hz through a "
            "serial link; intensity within the protocol's maximum",
            max_pulse_rate_hz=1.0,
        ),
        "pulse_train": HardCeiling(
            10.0, "mA", 1000.0,
            "Shannon 1992, IEEE TBME 39:424; Kuncel & Grill 2004: 2–255 Hz, 10–450 µs, "
            "≤ 30 µC/cm² per phase",
            frequency_hz=(2.0, 255.0), pulse_width_us=(10.0, 450.0),
            max_charge_density_uc_cm2=30.0,
        ),
    }
)  # fmt: skip
"""Hard ceilings by modality name."""


def charge_density_uc_cm2(amplitude_ma: float, pulse_width_us: float, area_cm2: float) -> float:
    """Charge per phase per electrode area, µC/cm², of a pulse of ``amplitude_ma`` lasting
    ``pulse_width_us``: I·t/A with mA·µs = 1e-3 µC."""
    return abs(amplitude_ma) * pulse_width_us * 1e-3 / area_cm2


def max_pulse_amplitude_ma(pulse_width_us: float, area_cm2: float) -> float:
    """Largest pulse amplitude, mA, that keeps the charge density within its ceiling."""
    density = HARD_CEILINGS["pulse_train"].max_charge_density_uc_cm2
    return density * area_cm2 / (pulse_width_us * 1e-3)
