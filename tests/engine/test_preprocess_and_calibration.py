import numpy as np
import pytest

from bci.acquire import RingBuffer
from bci.engine.calibration import calibration_windows, windows_ending_at
from bci.engine.preprocess import eeg_pipeline
from bci.engine.timeline import seconds_until_fit
from bci.protocol import load_protocol


def test_car_leaves_non_eeg_channels_out_of_the_average():
    protocol, _ = load_protocol("demo", ["preprocessing.picks=['C3', 'C4']", "decoder.model=",
                                         "preprocessing.notch_hz=50"])  # fmt: skip
    names = ("C3", "C4", "Cz", "AccelX", "SampleIndex")
    types = ("EEG", "EEG", "EEG", "ACC", None)
    pipeline = eeg_pipeline(protocol.preprocessing, names, 250.0, types)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 5))
    wild = data.copy()
    wild[:, 3:] *= 1e6  # huge accelerometer and index values must not leak into C3/C4
    out, _ = pipeline(data, np.arange(500) / 250)
    pipeline.reset()
    out_wild, _ = pipeline(wild, np.arange(500) / 250)
    np.testing.assert_allclose(out_wild, out)
    assert pipeline.ch_names_out == ("C3", "C4")


def test_calibration_windows_skip_trials_cut_by_a_gap_and_label_by_trial():
    protocol, _ = load_protocol("demo")
    sfreq = 100.0
    times = np.arange(0, 60, 1 / sfreq)
    times = times[(times < 20) | (times > 21)]  # a 1 s gap inside the second trial
    ring = RingBuffer(len(times), 11)
    ring.write(np.random.default_rng(1).standard_normal((len(times), 11)), times)
    cues = [(5.0, "left"), (19.0, "right"), (30.0, "right"), (40.0, "left")]
    windows, labels, groups, ends = calibration_windows(
        ring, cues, sfreq, protocol.decoder, protocol.preprocessing
    )
    assert set(groups) == {0, 2, 3} and windows.shape[1:] == (100, 11)
    matching = windows_ending_at(ring, ends, 100, sfreq)
    np.testing.assert_array_equal(matching, windows)  # the same ring gives the same windows
    with pytest.raises(RuntimeError, match="too late"):
        windows_ending_at(ring, np.array([0.5]), 100, sfreq)
    assert list(labels[groups == 2]) == ["right"] * int(np.sum(groups == 2))
    with pytest.raises(RuntimeError, match="both classes"):
        calibration_windows(ring, cues[:1], sfreq, protocol.decoder, protocol.preprocessing)


def test_the_calibration_ring_covers_every_block_up_to_the_fit():
    protocol, _ = load_protocol("demo")
    # baseline 5 s + 40 trials of at most 3.5 s + 30 s margin
    assert seconds_until_fit(protocol) == pytest.approx(5 + 40 * 3.5 + 30)
