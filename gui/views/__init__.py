"""The operator console's views: each a QWidget with ``attach(...)`` and ``redraw()``."""

from gui.views.decoder import DecoderView
from gui.views.eeg import EEGView
from gui.views.latency import LatencyView
from gui.views.nirs import NirsView
from gui.views.spectrum import SpectrumView
from gui.views.stim import StimView

__all__ = ["DecoderView", "EEGView", "LatencyView", "NirsView", "SpectrumView", "StimView"]
