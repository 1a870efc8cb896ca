"""The protocol's controller, built from its settings: an amplitude policy or the phase trigger,
and the governor's step for a decision hop."""

from __future__ import annotations

import numpy as np

from bci.control.class_map import ClassMapController, ClassMapSettings
from bci.control.dual_threshold import DualThresholdController, DualThresholdSettings
from bci.control.phase import PhaseTrigger, PhaseTriggerSettings, montage_weights, pipeline_sos
from bci.control.proportional import ProportionalController, ProportionalSettings
from bci.protocol import Protocol


def governor_step_s(hop_s: float) -> float:
    """The governor's longest slew step for a decision hop, s: at most 0.15 s worth of change
    per command, so a long hop never becomes a step a participant feels."""
    return max(min(1.5 * hop_s, 0.15), 1e-3)


def build_policy(protocol: Protocol):
    """The protocol's amplitude policy (``policy(row, time) -> amplitude``); None for the
    phase trigger, which fires pulses instead."""
    ctl = protocol.controller
    ramps = {"ramp_up_per_s": ctl.ramp_up_per_s, "ramp_down_per_s": ctl.ramp_down_per_s} \
        if ctl.kind != "phase" else {}  # fmt: skip
    if ctl.kind == "proportional":
        index = protocol.decoder.classes.index(ctl.target_class) if ctl.input == "decoder" else 0
        return ProportionalController(
            ProportionalSettings(target_index=index, p_low=ctl.p_low, p_high=ctl.p_high,
                                 floor=ctl.floor, ceiling=ctl.ceiling,
                                 abstain_below=ctl.abstain_below, **ramps)
        )  # fmt: skip
    if ctl.kind == "dual_threshold":
        return DualThresholdController(
            DualThresholdSettings(lower=ctl.lower, upper=ctl.upper,
                                  onset_windows=ctl.onset_windows,
                                  termination_windows=ctl.termination_windows,
                                  blanking_s=ctl.blanking_s, on_amplitude=ctl.on_amplitude,
                                  **ramps)
        )  # fmt: skip
    if ctl.kind == "class_map":
        return ClassMapController(
            ClassMapSettings(amplitudes=tuple(ctl.amplitudes), abstain_below=ctl.abstain_below,
                             **ramps)
        )  # fmt: skip
    return None


def build_trigger(protocol: Protocol, sfreq: float, pipeline) -> tuple[PhaseTrigger, np.ndarray]:
    """The phase trigger and the spatial weights that make its 1-D signal from the picks.

    The trigger corrects the phase lag of the engine's causal preprocessing filters.
    """
    ctl = protocol.controller
    trigger = PhaseTrigger(
        PhaseTriggerSettings(sfreq=sfreq, band_hz=tuple(ctl.band_hz), method=ctl.method,
                             window_s=ctl.window_s, target_deg=ctl.target_deg,
                             power_percentile=ctl.power_percentile,
                             refractory_s=ctl.refractory_s, max_lateness_deg=ctl.max_lateness_deg,
                             upstream_sos=pipeline_sos(pipeline))
    )  # fmt: skip
    return trigger, montage_weights(protocol.preprocessing.picks, ctl.montage)
