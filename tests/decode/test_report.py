import numpy as np
import pytest

from bci.decode.report import ece, plot_training_report, reliability

PNG = b"\x89PNG\r\n\x1a\n"


def test_reliability_bins_known_predictions():
    proba = np.array([[0.95, 0.05], [0.9, 0.1], [0.35, 0.65], [0.4, 0.6], [0.0, 1.0]])
    targets = np.array([0, 1, 1, 0, 1])
    confidence, accuracy, count = reliability(proba, targets, n_bins=5)
    assert count.tolist() == [0, 0, 0, 2, 3]  # 0.65, 0.6 | 0.95, 0.9, 1.0 (1.0 in the last bin)
    np.testing.assert_allclose(confidence[3:], [0.625, 0.95])
    np.testing.assert_allclose(accuracy[3:], [0.5, 2 / 3])
    assert np.isnan(confidence[:3]).all() and np.isnan(accuracy[:3]).all()
    expected = (2 * abs(0.5 - 0.625) + 3 * abs(2 / 3 - 0.95)) / 5
    assert ece(proba, targets, n_bins=5) == pytest.approx(expected)


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    targets = (rng.uniform(0, 1, 20000) < p).astype(int)
    calibrated = np.column_stack([1 - p, p])
    assert ece(calibrated, targets) < 0.02
    sharp = np.column_stack([p < 0.5, p >= 0.5]).astype(float)
    assert ece(sharp, targets) > 0.2


def test_reliability_refuses_bad_input():
    with pytest.raises(ValueError, match="proba must have shape"):
        reliability(np.ones(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="targets must be 2 class indices"):
        reliability(np.ones((2, 2)) / 2, np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"lie in 0..1"):
        reliability(np.ones((2, 2)) / 2, np.array([0, 2]))
    with pytest.raises(ValueError, match="at least one window"):
        ece(np.ones((0, 2)), np.zeros(0, int))


def test_training_report_is_written_with_any_subset_of_figures(tmp_path):
    rng = np.random.default_rng(1)
    targets = np.arange(200) % 2
    logits = np.column_stack([-(2 * targets - 1.0), 2 * targets - 1.0]) + rng.normal(0, 1, (200, 2))
    before = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    after = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    curves = {"training loss": [0.7, 0.5, 0.4, 0.35], "validation loss": [0.7, 0.55, 0.5, 0.52]}
    full = plot_training_report(
        tmp_path / "full.png",
        title="subject 3 · hybrid",
        curves=curves,
        reliability_before=(before, targets),
        reliability_after=(after, targets),
        accuracy={"EEG": 0.81, "fNIRS": 0.72, "hybrid": 0.86},
    )
    assert full.read_bytes().startswith(PNG)
    for name, kwargs in {
        "none": {},
        "curves": {"curves": curves},
        "after": {"reliability_after": (after, targets)},
    }.items():
        path = plot_training_report(tmp_path / f"{name}.png", title=name, **kwargs)
        assert path.read_bytes().startswith(PNG) and path.stat().st_size > 1000
