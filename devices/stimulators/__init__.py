"""Stimulators: simulated now, serial hardware behind the same base class later."""

from devices.stimulators.base import StimCommand, Stimulator
from devices.stimulators.simulated import SimulatedStimulator

STIMULATORS = {"simulated": SimulatedStimulator}
"""Stimulator classes by the protocol's ``stimulator.kind``."""

__all__ = ["STIMULATORS", "SimulatedStimulator", "StimCommand", "Stimulator"]
