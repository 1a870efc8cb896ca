import numpy as np
import pytest

from bci.decode.base import DecoderInfo, InputSpec, read_model_file
from bci.decode.covariance import oas_covariances
from bci.decode.csp import CspLdaDecoder

INFO = DecoderInfo(("left", "right"), eeg=InputSpec(("C3", "Cz", "C4", "CP1"), 250.0, 1.0))


def _data(n: int = 60, seed: int = 0, classes=("left", "right")):
    """Lateralized power, like ERD: each class lowers the power of its own source."""
    rng = np.random.default_rng(seed)
    labels = np.array(list(classes) * (n // len(classes)))
    mixing = np.random.default_rng(100).standard_normal((4, 4))
    sources = rng.standard_normal((n, 250, 4))
    for k, label in enumerate(classes):
        sources[labels == label, :, (0, 2, 1)[k]] *= 0.5
    return sources @ mixing, labels


def _accuracy(proba, labels, classes=INFO.classes):
    return np.mean(np.asarray(classes)[proba.argmax(axis=1)] == labels)


def test_oas_covariances_equal_sklearn():
    from sklearn.covariance import oas

    windows, _ = _data(4)
    for window, cov in zip(windows, oas_covariances(windows), strict=True):
        np.testing.assert_allclose(cov, oas(window)[0], rtol=1e-10)


def test_csp_lda_learns_lateralized_power_and_fast_path_equals_pipeline():
    windows, labels = _data()
    decoder = CspLdaDecoder().fit(windows, labels, INFO)
    test, test_labels = _data(100, seed=1)
    proba = decoder.predict_proba(test)
    np.testing.assert_allclose(proba, decoder.reference_proba(test), atol=1e-10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert _accuracy(proba, test_labels) > 0.85
    groups = np.arange(len(labels))
    assert decoder.cross_validate(windows, labels, groups, INFO, folds=5) > 0.85


def test_csp_lda_three_classes_fast_path_equals_pipeline():
    classes = ("left", "right", "feet")
    info = DecoderInfo(classes, eeg=INFO.eeg)
    windows, labels = _data(90, classes=classes)
    decoder = CspLdaDecoder(n_filters=4).fit(windows, labels, info)
    test, test_labels = _data(90, seed=1, classes=classes)
    proba = decoder.predict_proba(test)
    np.testing.assert_allclose(proba, decoder.reference_proba(test), atol=1e-10)
    assert proba.shape == (90, 3)
    assert _accuracy(proba, test_labels, classes) > 0.7


def test_csp_lda_saves_and_loads_bit_exactly(tmp_path):
    windows, labels = _data()
    decoder = CspLdaDecoder(n_filters=2, alignment="euclidean").fit(windows, labels, INFO)
    decoder.calibrate(*_data(40, seed=2))
    path = decoder.save(tmp_path / "csp.npz")
    loaded = CspLdaDecoder.from_state(*read_model_file(path))
    test, _ = _data(20, seed=3)
    assert loaded.config() == {"alignment": "euclidean", "n_filters": 2}
    assert loaded.temperature == decoder.temperature != 1.0
    np.testing.assert_array_equal(loaded.alignment.matrix, decoder.alignment.matrix)
    np.testing.assert_array_equal(loaded.predict_proba(test), decoder.predict_proba(test))


def test_csp_lda_refuses_bad_settings_and_windows():
    with pytest.raises(ValueError, match="n_filters must be a positive integer, got 0"):
        CspLdaDecoder(n_filters=0)
    windows, labels = _data()
    with pytest.raises(ValueError, match=r"shape \(n_windows, n_samples, 4\)"):
        CspLdaDecoder().fit(windows[:, :, :3], labels, INFO)
    decoder = CspLdaDecoder().fit(windows, labels, INFO)
    with pytest.raises(ValueError, match=r"got \(1, 250, 3\)"):
        decoder.predict_proba(np.zeros((1, 250, 3)))
    with pytest.raises(RuntimeError, match="call fit"):
        CspLdaDecoder().reference_proba(windows)
