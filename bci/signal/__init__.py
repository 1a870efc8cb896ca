"""Online signal-processing stages: causal filters, spatial stages, windows, features, fNIRS.

Every stage is a plain object built from frozen settings and called as
``stage(data, times) -> (data_out, times_out)`` on chunks of shape (n_samples, n_channels);
any chunk split gives the same result.
"""

from bci.signal.bandpower import BandPower, BandPowerSettings, band_power
from bci.signal.filters import ButterworthFilter, ButterworthSettings, NotchFilter, NotchSettings
from bci.signal.fnirs import (
    BeerLambert,
    BeerLambertSettings,
    OpticalDensity,
    OpticalDensitySettings,
    parse_fnirs_channels,
)
from bci.signal.pipeline import Pipeline
from bci.signal.spatial import ChannelPicker, CommonAverageReference, CommonAverageReferenceSettings
from bci.signal.windows import SlidingWindow, SlidingWindowSettings

__all__ = [
    "BandPower",
    "BandPowerSettings",
    "BeerLambert",
    "BeerLambertSettings",
    "ButterworthFilter",
    "ButterworthSettings",
    "ChannelPicker",
    "CommonAverageReference",
    "CommonAverageReferenceSettings",
    "NotchFilter",
    "NotchSettings",
    "OpticalDensity",
    "OpticalDensitySettings",
    "Pipeline",
    "SlidingWindow",
    "SlidingWindowSettings",
    "band_power",
    "parse_fnirs_channels",
]
