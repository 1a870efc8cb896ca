"""Controllers: decoder output or biomarker in, requested stimulation out (the governor has the
last word).

Amplitude policies share one interface, ``policy(row, time) -> amplitude`` and
``policy.reset(amplitude=None)``; the phase-locked trigger times single pulses instead.
"""

from bci.control.class_map import ClassMapController, ClassMapSettings
from bci.control.dual_threshold import DualThresholdController, DualThresholdSettings
from bci.control.phase import (
    PhaseDecision,
    PhaseTrigger,
    PhaseTriggerSettings,
    montage_weights,
    pipeline_sos,
)
from bci.control.proportional import ProportionalController, ProportionalSettings
from bci.control.ramp import RampLimiter, check_rate

__all__ = [
    "ClassMapController",
    "ClassMapSettings",
    "DualThresholdController",
    "DualThresholdSettings",
    "PhaseDecision",
    "PhaseTrigger",
    "PhaseTriggerSettings",
    "ProportionalController",
    "ProportionalSettings",
    "RampLimiter",
    "check_rate",
    "montage_weights",
    "pipeline_sos",
]
