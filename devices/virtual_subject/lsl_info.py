"""LSL stream descriptions of the virtual subject's outlets, with full channel metadata.

Follows the XDF meta-data conventions (``channels/channel/label,unit,type``, locations in mm;
NIRS ``source``, ``detector``, ``wavelen``) plus the NeuroLoop contract fields (``wavelength``,
``acquisition/manufacturer,model,seed``).
"""

from __future__ import annotations

import pylsl

from bci.streams import EEG_TYPE, NIRS_TYPE, SAMPLE_INDEX_CHANNEL, stream_names

from .fnirs import PAIRS, optode_positions
from .hemodynamics import (
    PARTIAL_PATHLENGTH_FACTOR,
    SOURCE_DETECTOR_DISTANCE_M,
    WAVELENGTHS_NM,
)
from .montage import position

MANUFACTURER = "NeuroLoop"
MODEL = "virtual subject"


def eeg_stream_info(
    prefix: str, seed: int, channel_names: tuple[str, ...], sfreq: float, line_freq: float
) -> pylsl.StreamInfo:
    """Description of the EEG outlet.

    Parameters
    ----------
    prefix : str
        Session prefix (``bci.streams.stream_names``).
    seed : int
        Subject seed, also in the source id ``f"{prefix}-eeg-{seed}"``.
    channel_names : tuple of str
        Electrodes, then optionally ``SampleIndex``.
    sfreq : float
        Nominal rate, Hz.
    line_freq : float
        Mains frequency, Hz (recorded so that notch filters can be set from the stream).

    Returns
    -------
    info : pylsl.StreamInfo
        float32 stream of type ``EEG_TYPE``.
    """
    info = pylsl.StreamInfo(
        stream_names(prefix)["eeg"], EEG_TYPE, len(channel_names), sfreq, "float32",
        f"{prefix}-eeg-{seed}",
    )  # fmt: skip
    channels = info.desc().append_child("channels")
    for name in channel_names:
        channel = channels.append_child("channel")
        channel.append_child_value("label", name)
        if name == SAMPLE_INDEX_CHANNEL:
            channel.append_child_value("unit", "samples")
            channel.append_child_value("type", "MISC")
            continue
        channel.append_child_value("unit", "microvolts")
        channel.append_child_value("type", "EEG")
        _location(channel, position(name) * 1e3)
    _acquisition(info, seed)
    info.desc().append_child_value("line_frequency", f"{line_freq:g}")
    return info


def nirs_stream_info(prefix: str, seed: int, sfreq: float) -> pylsl.StreamInfo:
    """Description of the fNIRS outlet (raw intensities, pairs consecutive).

    Parameters
    ----------
    prefix : str
        Session prefix.
    seed : int
        Subject seed, also in the source id ``f"{prefix}-nirs-{seed}"``.
    sfreq : float
        Nominal rate, Hz.

    Returns
    -------
    info : pylsl.StreamInfo
        float32 stream of type ``NIRS_TYPE``.
    """
    n_channels = len(PAIRS) * len(WAVELENGTHS_NM)
    info = pylsl.StreamInfo(
        stream_names(prefix)["nirs"], NIRS_TYPE, n_channels, sfreq, "float32",
        f"{prefix}-nirs-{seed}",
    )  # fmt: skip
    desc = info.desc()
    channels = desc.append_child("channels")
    for source, detector, _ in PAIRS:
        for wavelength in WAVELENGTHS_NM:
            channel = channels.append_child("channel")
            channel.append_child_value("label", f"{source}_{detector} {wavelength}")
            channel.append_child_value("unit", "intensity")
            channel.append_child_value("type", "NIRS")
            channel.append_child_value("measure", "Amplitude")
            channel.append_child_value("wavelength", str(wavelength))
            channel.append_child_value("wavelen", str(wavelength))  # XDF NIRS spelling
            channel.append_child_value("source", source)
            channel.append_child_value("detector", detector)
    optodes = desc.append_child("optodes")
    for label, pos in optode_positions().items():
        optode = optodes.append_child("optode")
        optode.append_child_value("label", label)
        optode.append_child_value("type", "source" if label.startswith("S") else "detector")
        _location(optode, pos * 1e3)
    fnirs = desc.append_child("fnirs")
    fnirs.append_child_value("source_detector_distance", f"{SOURCE_DETECTOR_DISTANCE_M:g}")
    fnirs.append_child_value("source_detector_distance_unit", "m")
    fnirs.append_child_value("partial_pathlength_factor", f"{PARTIAL_PATHLENGTH_FACTOR:g}")
    fnirs.append_child_value("optical_density", "natural log")
    _acquisition(info, seed)
    return info


def _location(element: pylsl.XMLElement, xyz_mm) -> None:
    location = element.append_child("location")
    for axis, value in zip("XYZ", xyz_mm, strict=True):
        location.append_child_value(axis, f"{value:.2f}")


def _acquisition(info: pylsl.StreamInfo, seed: int) -> None:
    acquisition = info.desc().append_child("acquisition")
    acquisition.append_child_value("manufacturer", MANUFACTURER)
    acquisition.append_child_value("model", MODEL)
    acquisition.append_child_value("seed", str(seed))
