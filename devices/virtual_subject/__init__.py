"""The virtual subject: a simulated participant that streams EEG and fNIRS over LSL like an
amplifier, follows motor-imagery cues and answers tDCS, tACS and TMS, reproducibly from a seed.

``VirtualSubject`` is the pure model (arrays in, arrays out); ``run_virtual_subject`` is the
process that publishes it (``bci simulate``).
"""

from .eeg import EegGenerator, EegSettings
from .fnirs import FnirsGenerator, FnirsSettings
from .hemodynamics import HemodynamicParams
from .params import ArtifactParams, BackgroundParams, ErdParams, RhythmParams, SubjectParams
from .process import SimulateOptions, SimulationSummary, run_virtual_subject
from .stimulation import Plasticity, StimulationParams
from .subject import VirtualSubject

__all__ = [
    "ArtifactParams",
    "BackgroundParams",
    "EegGenerator",
    "EegSettings",
    "ErdParams",
    "FnirsGenerator",
    "FnirsSettings",
    "HemodynamicParams",
    "Plasticity",
    "RhythmParams",
    "SimulateOptions",
    "SimulationSummary",
    "StimulationParams",
    "SubjectParams",
    "VirtualSubject",
    "run_virtual_subject",
]
