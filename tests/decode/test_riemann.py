import numpy as np
import pytest

from bci.decode import DecoderInfo, InputSpec, TangentSpaceDecoder, load_decoder

INFO = DecoderInfo(("left", "right"), eeg=InputSpec(("C3", "Cz", "C4", "CP1"), 250.0, 1.0))


def _data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.array(["left", "right"] * (n // 2))
    mixing = rng.standard_normal((4, 4))
    windows = rng.standard_normal((n, 250, 4)) @ mixing
    # class-dependent power on channel 0 vs 2, like lateralized ERD
    windows[labels == "left", :, 0] *= 0.5
    windows[labels == "right", :, 2] *= 0.5
    return windows, labels


def test_fast_path_equals_pyriemann_pipeline_and_separates_classes():
    windows, labels = _data()
    decoder = TangentSpaceDecoder().fit(windows, labels, INFO)
    test, test_labels = _data(40, seed=1)
    proba = decoder.predict_proba(test)
    np.testing.assert_allclose(proba, decoder.reference_proba(test), atol=1e-9)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = np.mean(np.array(INFO.classes)[proba.argmax(axis=1)] == test_labels)
    assert accuracy > 0.9
    groups = np.repeat(np.arange(30), 2)
    assert decoder.cross_validate(windows, labels, groups, INFO, folds=5) > 0.8


def test_decoder_refuses_wrong_input_and_wrong_streams():
    decoder = TangentSpaceDecoder()
    with pytest.raises(RuntimeError, match="call fit"):
        decoder.predict_proba(np.zeros((1, 250, 4)))
    windows, labels = _data()
    with pytest.raises(ValueError, match="not among the classes"):
        decoder.fit(windows, np.array(["up"] * len(labels)), INFO)
    decoder.fit(windows, labels, INFO)
    with pytest.raises(ValueError, match="shape"):
        decoder.predict_proba(np.zeros((1, 250, 3)))
    with pytest.raises(ValueError, match=r"lacks channels \['CP1'\]"):
        decoder.check_compatible(("C3", "Cz", "C4"), 250.0)
    with pytest.raises(ValueError, match="500 Hz"):
        decoder.check_compatible(("C3", "Cz", "C4", "CP1", "Pz"), 500.0)
    index = decoder.check_compatible(("Pz", "C3", "Cz", "C4", "CP1"), 250.0)  # a superset
    assert index.tolist() == [1, 2, 3, 4]


def test_saved_model_loads_bit_exactly_with_its_alignment_and_temperature(tmp_path):
    windows, labels = _data()
    decoder = TangentSpaceDecoder(alignment="riemann").fit(windows, labels, INFO)
    decoder.calibrate(*_data(40, seed=2))
    decoder.preprocessing = {"bandpass_hz": [8.0, 30.0]}
    loaded = load_decoder(decoder.save(tmp_path / "model.npz"))
    test, _ = _data(20, seed=1)
    assert loaded.info == decoder.info
    assert loaded.temperature == decoder.temperature != 1.0
    assert loaded.preprocessing == decoder.preprocessing
    np.testing.assert_array_equal(loaded.predict_proba(test), decoder.predict_proba(test))
