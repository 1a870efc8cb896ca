"""A simulated stimulator: holds the output state that the virtual subject responds to."""

from __future__ import annotations

from bci.safety.ceilings import HARD_CEILINGS
from devices.stimulators.base import SessionLimits, Stimulator


class SimulatedStimulator(Stimulator):
    """No hardware: the output is the last written command.

    The engine publishes every command on the stimulation-state stream, which the virtual
    subject reads, so the simulated subject feels exactly what this stimulator was told.

    Parameters
    ----------
    modality : str
        tdcs | tacs | tms | pulse_train.
    limits : SessionLimits | None
        The session's limits, refused beyond (default the hard ceiling).
    """

    def __init__(self, modality: str = "tdcs", limits: SessionLimits | None = None) -> None:
        if modality not in HARD_CEILINGS:
            raise ValueError(f"modality must be one of {sorted(HARD_CEILINGS)}, got {modality!r}.")
        self.modality = modality
        self.output = (0.0, 0.0, 0)
        super().__init__(limits)

    def _connect(self) -> None:
        self.output = (0.0, 0.0, 0)

    def _write(self, amplitude: float, frequency_hz: float, pulses: int) -> None:
        self.output = (amplitude, frequency_hz, pulses)

    def _disconnect(self) -> None:
        self.output = (0.0, 0.0, 0)
