"""Builds the engine's signal pipelines from a protocol and the streams' channel names."""

from __future__ import annotations

from bci.protocol.schema import PreprocessingSection
from bci.signal import (
    BeerLambert,
    BeerLambertSettings,
    ButterworthFilter,
    ButterworthSettings,
    ChannelPicker,
    CommonAverageReference,
    CommonAverageReferenceSettings,
    NotchFilter,
    NotchSettings,
    OpticalDensity,
    Pipeline,
)
from bci.streams import SAMPLE_INDEX_CHANNEL


def eeg_pipeline(settings: PreprocessingSection, ch_names, sfreq: float,
                 ch_types=None) -> Pipeline:  # fmt: skip
    """CAR over every EEG channel → pick the decoder's channels → notch → band-pass.

    Picking before filtering keeps the per-chunk cost proportional to the channels the decoder
    reads, not to the montage. Channels whose type is not EEG (accelerometers, the sample index)
    stay out of the average.
    """
    stages = []
    if settings.car:
        types = ch_types or ("EEG",) * len(ch_names)
        non_eeg = tuple(
            name for name, kind in zip(ch_names, types, strict=True)
            if name == SAMPLE_INDEX_CHANNEL or (kind or "EEG").upper() != "EEG"
        )  # fmt: skip
        stages.append(
            CommonAverageReference(CommonAverageReferenceSettings(exclude=non_eeg), ch_names)
        )
    stages.append(ChannelPicker(ch_names, settings.picks))
    if settings.notch_hz is not None and settings.notch_hz < sfreq / 2:
        stages.append(NotchFilter(NotchSettings(freq_hz=settings.notch_hz, sfreq=sfreq)))
    low, high = settings.bandpass_hz
    stages.append(
        ButterworthFilter(
            ButterworthSettings(
                kind="bandpass",
                order=settings.filter_order,
                low_hz=low,
                high_hz=high,
                sfreq=sfreq,
            )
        )
    )
    return Pipeline(stages)


def channels_read(settings: PreprocessingSection, ch_names, ch_types=None) -> list[int]:
    """Columns of the stream that :func:`eeg_pipeline` reads: the picks, and with CAR every EEG
    channel (a NaN in an accelerometer or the sample index never reaches the decoder)."""
    types = ch_types or ("EEG",) * len(ch_names)
    return [
        i for i, (name, kind) in enumerate(zip(ch_names, types, strict=True))
        if name in settings.picks or (settings.car and name != SAMPLE_INDEX_CHANNEL
                                      and (kind or "EEG").upper() == "EEG")
    ]  # fmt: skip


def fnirs_pipeline(ch_names, distance_cm: float = 3.0) -> Pipeline:
    """Raw intensity → optical density → HbO/HbR by the modified Beer–Lambert law."""
    return Pipeline(
        [
            OpticalDensity(),
            BeerLambert(BeerLambertSettings(ch_names=tuple(ch_names), distances_cm=distance_cm)),
        ]
    )
