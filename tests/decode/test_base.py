import numpy as np
import pytest

from bci.decode import Alignment, DecoderInfo, InputSpec, TangentSpaceDecoder, load_decoder
from bci.decode.base import fit_temperature, select_inputs, softmax

INFO = DecoderInfo(("left", "right"), eeg=InputSpec(("C3", "Cz", "C4"), 100.0, 1.0))


def test_alignment_whitens_each_reference_to_identity():
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    windows = rng.standard_normal((50, 200, 3)) @ mixing
    for kind in Alignment.KINDS:
        aligned = Alignment.fit(windows, kind).apply(windows)
        covs = aligned.transpose(0, 2, 1) @ aligned / 200
        # the arithmetic mean is exactly I for Euclidean alignment; near I for the Riemannian one
        np.testing.assert_allclose(covs.mean(0), np.eye(3), atol=0.1 if kind == "riemann" else 1e-4)
    with pytest.raises(ValueError, match="alignment kind"):
        Alignment.fit(windows, "procrustes")


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (4000, 2))
    true_t = 2.5
    proba = softmax(logits, true_t)
    targets = (rng.random(4000) < proba[:, 1]).astype(int)
    assert fit_temperature(logits, targets) == pytest.approx(true_t, rel=0.15)


def test_select_inputs_gives_an_array_or_a_dict():
    eeg, nirs = np.zeros((1, 100, 3)), np.zeros((1, 50, 4))
    assert select_inputs(INFO, {"eeg": eeg, "nirs": nirs}) is eeg
    both = DecoderInfo(INFO.classes, eeg=INFO.eeg, nirs=InputSpec(("a", "b", "c", "d"), 10.0, 5.0))
    assert set(select_inputs(both, {"eeg": eeg, "nirs": nirs})) == {"eeg", "nirs"}
    assert DecoderInfo.from_json(both.to_json()) == both


def test_model_file_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_decoder(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a NeuroLoop model file"):
        load_decoder(junk)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a NeuroLoop model file"):
        load_decoder(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="alignment must be"):
        TangentSpaceDecoder(alignment="procrustes")
    with pytest.raises(ValueError, match="reads"):
        TangentSpaceDecoder().fit(np.zeros((4, 100, 3)), ["left", "right"] * 2,
                                  DecoderInfo(INFO.classes))  # fmt: skip
