"""Hard per-modality ceilings. Literature values; not editable by any protocol.

A protocol's session limits are accepted only at or below these (``bci check`` refuses others),
and the governor clamps every command to the stricter of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class HardCeiling:
    """The most any session may ask of one stimulation modality."""

    max_amplitude: float
    """Largest |amplitude|: mA for tES and pulse trains, % of maximum stimulator output for TMS."""
    unit: str
    """Unit of ``max_amplitude``."""
    max_slew_per_s: float
    """Fastest amplitude change, unit/s. tES: 1 mA/s, i.e. a 0→2 mA ramp over ≥ 2 s; conventional
    ramps are 10–30 s and faster onsets cause skin sensations and phosphenes, so 1 mA/s is the
    ceiling a closed loop may use (Woods et al. 2016, Clin Neurophysiol 127:1031)."""
    source: str
    """Where the value comes from."""


HARD_CEILINGS = MappingProxyType(
    {
        "tdcs": HardCeiling(4.0, "mA", 1.0, "Bikson et al. 2016, Brain Stimul 9:641 (≤ 4 mA)"),
        "tacs": HardCeiling(2.0, "mA", 1.0, "Antal et al. 2017, Clin Neurophysiol 128:1774"),
        "tms": HardCeiling(100.0, "%MSO", 1000.0, "device range; protocol sets the session max"),
        "pulse_train": HardCeiling(
            10.0, "mA", 1000.0, "charge-density bound; Shannon 1992, IEEE TBME 39:424"
        ),
    }
)
"""Hard ceilings by modality name."""
