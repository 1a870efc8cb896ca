import json

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from scipy import signal

from bci.decode import DecoderInfo, InputSpec
from bci.decode.base import read_model_file
from bci.decode.snn import (
    NIR_DT_S,
    RATE_GAIN,
    SUPPORTED_NIR_NODES,
    NirNetwork,
    SpikingDecoder,
    SpikingNetwork,
    check_nir_graph,
)
from bci.decode.snn_encoding import (
    SpikeEncoder,
    SpikeEncoding,
    band_log_power,
    csp_filters,
    threshold_spikes,
)

SFREQ = 250.0
CHANNELS = ("FC3", "C3", "CP3", "Cz", "FC4", "C4", "CP4", "Pz")
INFO = DecoderInfo(("left", "right"), eeg=InputSpec(CHANNELS, SFREQ, 1.0))
FAST = {"epochs": 60, "patience": 15, "device": "cpu"}


def _data(n: int = 160, seed: int = 0, n_channels: int = len(CHANNELS)):
    """Band-passed (8–30 Hz) noise, µV, with local mixing and lateralized power: the "left"
    class has half the amplitude on channel 1 (C3), the "right" class on channel 5 (C4)."""
    rng = np.random.default_rng(seed)
    labels = np.array(["left", "right"] * (n // 2))
    n_samples = int(SFREQ)
    sos = signal.butter(4, (8.0, 30.0), "bandpass", fs=SFREQ, output="sos")
    sources = signal.sosfiltfilt(sos, rng.standard_normal((n, 2 * n_samples, n_channels)), axis=1)
    sources = sources[:, n_samples:] * 10.0
    sources[labels == "left", :, 1] *= 0.5
    sources[labels == "right", :, 5] *= 0.5
    mixing = np.eye(n_channels) + 0.3 * np.random.default_rng(99).standard_normal((n_channels,) * 2)
    return sources @ mixing, labels


def _counts(decoder: SpikingDecoder, windows: np.ndarray) -> np.ndarray:
    """Output spike counts, from the logits (RATE_GAIN × count / n_steps)."""
    n_steps = decoder.encoding.n_steps(decoder.info.eeg.n_samples, decoder.info.eeg.sfreq)
    counts = decoder.logits(windows) * n_steps / RATE_GAIN
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
    return np.round(counts)


@pytest.fixture(scope="module")
def fitted():
    windows, labels = _data()
    return SpikingDecoder(**FAST).fit(windows, labels, INFO, groups=np.arange(len(labels)))


def test_band_log_power_is_the_band_envelope_in_log10_uv2():
    settings = SpikeEncoding()  # 10 samples per 40 ms bin at 250 Hz
    t = np.arange(int(SFREQ)) / SFREQ
    window = np.zeros((1, len(t), 2))
    window[0, :, 0] = 3.0 * np.cos(2 * np.pi * 10.0 * t)  # mu, 9 µV² of band power
    window[0, :, 1] = 2.0 * np.cos(2 * np.pi * 25.0 * t)  # high beta, 4 µV²
    single = window[..., :1] + 5.0  # one channel with an offset, which the encoding removes
    band_log_power(single, SFREQ, settings)
    np.testing.assert_array_equal(single, window[..., :1] + 5.0)  # and leaves the input alone
    log_power = band_log_power(window, SFREQ, settings)
    assert log_power.shape == (1, 25, 2 * 3)  # channel-major: (ch0: mu, lo-β, hi-β), (ch1: …)
    middle = log_power[0, 8:17]  # the edges ring (an ideal band-pass of a cut sinusoid)
    np.testing.assert_allclose(middle[:, 0], np.log10(9.0), atol=0.03)
    np.testing.assert_allclose(middle[:, 5], np.log10(4.0), atol=0.03)
    assert middle[:, [1, 2, 3, 4]].max() < np.log10(9.0) - 1.0
    assert settings.bin_samples(500.0) == 20 and settings.envelope_step(500.0) == 2
    assert settings.n_steps(500, 500.0) == 25 and settings.n_steps(375, 250.0) == 37


def test_threshold_spikes_layout():
    values = np.array([[[0.9, -0.2], [0.1, -0.7], [-1.2, 0.6]]])  # (1 window, 3 steps, 2 features)
    spikes = threshold_spikes(values, 0.5)
    assert spikes.shape == (3, 1, 4) and spikes.dtype == np.float32
    up, down = spikes[:, 0, :2], spikes[:, 0, 2:]
    np.testing.assert_array_equal(up, [[1, 0], [0, 0], [0, 1]])
    np.testing.assert_array_equal(down, [[0, 0], [0, 1], [1, 0]])


def test_encoder_encodes_each_window_alone_and_checks_its_input():
    windows, _ = _data(8)
    encoder = SpikeEncoder(SpikeEncoding(), SFREQ)
    with pytest.raises(RuntimeError, match="call fit"):
        encoder(windows)
    encoder.fit(windows)
    batch = encoder(windows)
    assert batch.shape == (25, 8, encoder.n_inputs(len(CHANNELS)))
    assert set(np.unique(batch)) <= {0.0, 1.0}
    for i in range(len(windows)):  # training (a batch) and online (one window) encode alike
        np.testing.assert_array_equal(encoder(windows[i : i + 1])[:, 0], batch[:, i])
    with pytest.raises(ValueError, match="fitted on 8"):
        encoder(windows[..., :5])
    with pytest.raises(ValueError, match="Nyquist"):
        band_log_power(windows, 50.0, SpikeEncoding())
    with pytest.raises(ValueError, match="shorter than one bin"):
        band_log_power(windows[:, :5], SFREQ, SpikeEncoding())
    with pytest.raises(ValueError, match="bin_s"):
        SpikeEncoding(bin_s=0.0)
    with pytest.raises(ValueError, match="bands_hz"):
        SpikeEncoding(bands_hz=((13.0, 8.0),))


def test_learns_lateralized_power(fitted):
    test, labels = _data(100, seed=1)
    proba = fitted.predict_proba(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = np.mean(np.array(INFO.classes)[proba.argmax(axis=1)] == labels)
    assert accuracy > 0.85
    # logits are the output neurons' firing rates over the window's 25 steps, × RATE_GAIN
    counts = _counts(fitted, test)
    assert 0 <= counts.min() and counts.max() <= 25


def test_nir_export_reads_back_spike_for_spike(fitted, tmp_path):
    path = fitted.export_nir(tmp_path / "snn.nir")
    graph = nir.read(path)
    assert {type(node).__name__ for node in graph.nodes.values()} == set(SUPPORTED_NIR_NODES)
    assert graph.metadata["time_step_s"] == pytest.approx(0.04)
    assert json.loads(graph.metadata["classes"]) == list(INFO.classes)
    # snnTorch's convention: tau = dt / (1 − β) at dt = 1e-4 s, r = tau / dt, reset to 0
    lif = graph.nodes["lif1"]
    np.testing.assert_allclose(lif.tau, NIR_DT_S / (1 - 0.875), rtol=1e-6)
    np.testing.assert_allclose(lif.r, lif.tau / NIR_DT_S, rtol=1e-6)
    assert np.all(lif.v_threshold == 1) and np.all(lif.v_reset == 0) and np.all(lif.v_leak == 0)
    np.testing.assert_array_equal(graph.nodes["head"].weight, fitted.network.head.weight.detach())

    test, _ = _data(40, seed=2)
    spikes = fitted.encode(test)
    simulator = NirNetwork.read(path)
    output = simulator(spikes)
    assert output.shape == (25, 40, 2)
    with torch.no_grad():
        trained = fitted.network.spike_trains(torch.from_numpy(spikes.transpose(1, 0, 2).copy()))
    np.testing.assert_array_equal(output, trained.numpy().transpose(1, 0, 2))
    np.testing.assert_array_equal(output.sum(axis=0), _counts(fitted, test))
    # the state is reset for each call: a second run (same batch shape) gives the same spikes
    np.testing.assert_array_equal(simulator(spikes), output)
    np.testing.assert_array_equal(simulator(spikes[:, :1])[:, 0], output[:, 0])
    assert fitted.export(tmp_path / "again.nir") == tmp_path / "again.nir"
    with pytest.raises(ValueError, match="format='nir' only"):
        fitted.export(tmp_path / "snn.pt", format="torchscript")


def test_nir_reader_refuses_other_node_types():
    graph = nir.NIRGraph.from_list(
        nir.Affine(np.ones((2, 3), np.float32), np.zeros(2, np.float32)),
        nir.CubaLIF(
            tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
            v_threshold=np.ones(2),
        ),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"\['CubaLIF'\]"):
        check_nir_graph(graph)
    with pytest.raises(ValueError, match="CubaLIF"):
        NirNetwork(graph)


def test_saved_model_loads_bit_exactly(fitted, tmp_path):
    fitted.calibrate(*_data(40, seed=3))
    header, arrays = read_model_file(fitted.save(tmp_path / "snn.npz"))
    assert header["kind"] == "snn"
    loaded = SpikingDecoder.from_state(header, arrays)
    test, _ = _data(20, seed=1)
    assert loaded.temperature == fitted.temperature
    np.testing.assert_array_equal(loaded.encoder.mean, fitted.encoder.mean)
    np.testing.assert_array_equal(loaded.predict_proba(test), fitted.predict_proba(test))
    twin = SpikingDecoder(**json.loads(json.dumps(fitted.config())))
    assert twin.config() == fitted.config()


def test_population_pretraining_then_head_and_full_fine_tuning():
    first, first_labels = _data(80, seed=4)
    second, second_labels = _data(80, seed=5)
    windows = np.concatenate([first, 3.0 * second])  # a second subject, three times louder
    labels = np.concatenate([first_labels, second_labels])
    subjects = np.repeat([0, 1], 80)
    decoder = SpikingDecoder(alignment="euclidean", **FAST)
    decoder.fit(windows, labels, INFO, groups=np.arange(160), subjects=subjects)
    body = decoder.network.fc1.weight.detach().clone()
    head = decoder.network.head.weight.detach().clone()
    mean = decoder.encoder.mean.copy()
    calibration, calibration_labels = _data(40, seed=6)
    calibration *= 0.2  # a new, quieter subject: alignment takes its level out
    decoder.fine_tune(calibration, calibration_labels, "head")
    assert torch.equal(decoder.network.fc1.weight, body)
    assert not torch.equal(decoder.network.head.weight, head)
    np.testing.assert_array_equal(decoder.encoder.mean, mean)  # the population's z-score stays
    decoder.fine_tune(calibration, calibration_labels, "full")
    assert not torch.equal(decoder.network.fc1.weight, body)
    test, test_labels = _data(60, seed=7)
    predicted = np.array(INFO.classes)[decoder.logits(0.2 * test).argmax(axis=1)]
    assert np.mean(predicted == test_labels) > 0.7


def test_refuses_bad_settings_and_forgets_its_neurons():
    with pytest.raises(ValueError, match="dropout"):
        SpikingDecoder(dropout=0.5)
    with pytest.raises(ValueError, match="beta_hidden"):
        SpikingDecoder(beta_hidden=1.0)
    with pytest.raises(ValueError, match="n_hidden"):
        SpikingDecoder(n_hidden=0)
    with pytest.raises(RuntimeError, match="call fit"):
        SpikingDecoder().export_nir("never.nir")
    before = len(snn.SpikingNeuron.instances)
    for _ in range(3):
        SpikingNetwork(12, 2).step_module()
    assert len(snn.SpikingNeuron.instances) == before


@pytest.mark.parametrize(("n_channels", "sfreq", "window_s"), [(64, 500.0, 1.0), (3, 1000.0, 1.5)])
def test_three_classes_at_other_montages_and_rates(tmp_path, n_channels, sfreq, window_s):
    info = DecoderInfo(
        ("a", "b", "c"), eeg=InputSpec(tuple(f"E{i}" for i in range(n_channels)), sfreq, window_s)
    )
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((30, info.eeg.n_samples, n_channels)) * 10
    decoder = SpikingDecoder(epochs=2, device="cpu").fit(
        windows, np.array(["a", "b", "c"] * 10), info
    )
    n_steps = info.eeg.n_samples // round(0.04 * sfreq)  # whole 40 ms bins: 25 and 37
    spikes = decoder.encode(windows[:4])
    assert spikes.shape == (n_steps, 4, 2 * 3 * n_channels)
    assert decoder.predict_proba(windows[:1]).shape == (1, 3)
    graph = nir.read(decoder.export_nir(tmp_path / "snn.nir"))
    assert graph.nodes["head"].weight.shape == (3, 64)
    np.testing.assert_array_equal(
        NirNetwork(graph)(spikes).sum(axis=0), _counts(decoder, windows[:4])
    )


def test_csp_filters_separate_class_variance_and_skip_other_than_two_classes():
    rng = np.random.default_rng(3)
    windows = rng.standard_normal((40, 100, 4))
    targets = np.repeat([0, 1], 20)
    windows[targets == 0, :, 1] *= 3.0  # class 0 has more power on channel 1
    filters = csp_filters(windows, targets, 2)
    assert filters.shape == (4, 2)
    power = [(windows[targets == k] @ filters).var(axis=(0, 1)) for k in (0, 1)]
    assert power[0][0] < power[1][0] and power[0][1] > power[1][1]  # each end favours a class
    assert csp_filters(windows, np.repeat([0, 1, 2, 0], 10), 2) is None
    assert csp_filters(windows, targets, 0) is None
