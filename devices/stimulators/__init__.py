"""Stimulators: simulated, Magstim TMS over serial, open-hardware tES over serial, one lifecycle."""

from devices.stimulators.base import (
    CommandRefused,
    SessionLimits,
    StimCommand,
    Stimulator,
    StimulatorError,
)
from devices.stimulators.simulated import SimulatedStimulator

STIMULATOR_KINDS = ("simulated", "magstim", "tes")
"""The protocol's ``stimulator.kind`` values."""


def open_stimulator(section, limits: SessionLimits) -> Stimulator:
    """The (not yet connected) stimulator a protocol's ``[stimulator]`` section names, holding
    the session's ``limits`` (it refuses commands beyond them, behind the governor).

    Raises
    ------
    StimulatorError
        A hardware stimulator without a port.
    """
    if section.kind == "simulated":
        return SimulatedStimulator(section.modality, limits)
    if not section.port:
        raise StimulatorError(
            f"stimulator.port is empty: a {section.kind} stimulator needs its serial port, e.g. "
            f"--set stimulator.port=/dev/ttyUSB0 (bci emulate {section.kind} prints one to try)"
        )
    if section.kind == "magstim":
        from devices.stimulators.magstim import MagstimStimulator

        return MagstimStimulator(section.port, max_power_pct=limits.max_amplitude, limits=limits)
    from devices.stimulators.tes import TesStimulator

    return TesStimulator(section.port, modality=section.modality, limits=limits)


__all__ = [
    "STIMULATOR_KINDS",
    "CommandRefused",
    "SessionLimits",
    "SimulatedStimulator",
    "StimCommand",
    "Stimulator",
    "StimulatorError",
    "open_stimulator",
]
