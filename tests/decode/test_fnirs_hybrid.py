import numpy as np
import pytest

from bci.decode.base import DecoderInfo, InputSpec, read_model_file
from bci.decode.fnirs import FnirsDecoder
from bci.decode.hybrid import HybridDecoder, fusion_weights, log_softmax
from bci.decode.riemann import TangentSpaceDecoder

CLASSES = ("left", "right")
EEG = InputSpec(("C3", "Cz", "C4", "CP1"), 250.0, 1.0)
# 8 pairs as the virtual subject: S1–S2 over the left motor cortex, S3–S4 over the right
PAIRS = ("S1_D1", "S1_D2", "S2_D1", "S2_D2", "S3_D3", "S3_D4", "S4_D3", "S4_D4")
NIRS = InputSpec(tuple(f"{pair} {chromo}" for pair in PAIRS for chromo in ("hbo", "hbr")),
                 10.0, 10.0)  # fmt: skip
INFO = DecoderInfo(CLASSES, eeg=EEG, nirs=NIRS)


def _labels(n):
    return np.array(list(CLASSES) * (n // 2))


def _eeg(n, seed, ratio=0.5):
    """Lateralized power (ERD): ``ratio`` of the power of one source per class."""
    rng = np.random.default_rng(seed)
    labels = _labels(n)
    windows = rng.standard_normal((n, 250, 4))
    windows[labels == "left", :, 0] *= ratio
    windows[labels == "right", :, 2] *= ratio
    return windows @ np.random.default_rng(100).standard_normal((4, 4)), labels


def _nirs(n, seed, amplitude=0.5):
    """HbO rise (µM) and a third as large HbR dip over the contralateral motor cortex (a gamma
    HRF peaking 5 s after onset, ipsilateral at 30 %), on top of the level left from earlier
    trials, drift, a Mayer wave and white noise."""
    rng = np.random.default_rng(seed)
    labels = _labels(n)
    t = np.arange(NIRS.n_samples) / NIRS.sfreq
    hrf = (t / 5.0) ** 5 * np.exp(5.0 - t)
    hemisphere = np.repeat(np.arange(8) // 4, 2)  # per channel, 0 left / 1 right
    sign = np.tile([1.0, -1 / 3], 8)  # HbO, HbR
    contralateral = np.where(labels == "left", 1, 0)
    gain = np.where(hemisphere == contralateral[:, None], 1.0, 0.3) * sign
    windows = amplitude * hrf[None, :, None] * gain[:, None, :]
    windows += rng.normal(0, 2.0, (n, 1, 16)) + rng.normal(0, 0.02, (n, 1, 16)) * t[:, None]
    mayer = np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    windows += 0.3 * mayer[:, :, None] * rng.uniform(0.7, 1.3, 16)
    return windows + rng.normal(0, 0.2, windows.shape), labels


def _accuracy(proba, labels):
    return np.mean(np.asarray(CLASSES)[proba.argmax(axis=1)] == labels)


# fNIRS ------------------------------------------------------------------------------------
def test_fnirs_features_are_mean_slope_and_peak_after_the_baseline():
    info = DecoderInfo(CLASSES, nirs=InputSpec(("S1_D1 hbo", "S1_D1 hbr"), 10.0, 1.0))
    t = np.arange(10) / 10.0
    ramp = np.stack([3.0 + 2.0 * t, 1.0 - 0.5 * t], axis=1)  # µM; slopes 2 and -0.5 µM/s
    windows = np.stack([ramp, -ramp, 2 * ramp, -2 * ramp])
    labels = _labels(4)
    decoder = FnirsDecoder(baseline_s=0.2).fit(windows, labels, info)
    mean, slope, peak = np.split(decoder.features(windows[:1])[0], 3)
    baseline = ramp[:2].mean(axis=0)
    np.testing.assert_allclose(mean, ramp.mean(axis=0) - baseline)
    np.testing.assert_allclose(slope, [2.0, -0.5])
    np.testing.assert_allclose(peak, ramp[-1] - baseline)
    assert FnirsDecoder(baseline_s=0).fit(windows, labels, info).features(windows[:1])[0, 0] == (
        pytest.approx(ramp[:, 0].mean())
    )
    with pytest.raises(ValueError, match="must have 10 samples"):
        decoder.features(np.zeros((1, 20, 2)))
    with pytest.raises(ValueError, match="baseline_s"):
        FnirsDecoder(baseline_s=-1)


def test_fnirs_decoder_learns_hrf_responses_and_loads_bit_exactly(tmp_path):
    info = DecoderInfo(CLASSES, nirs=NIRS)
    decoder = FnirsDecoder().fit(*_nirs(60, 0), info)
    test, labels = _nirs(100, 1)
    proba = decoder.predict_proba(test)
    np.testing.assert_allclose(proba, decoder.reference_proba(test), atol=1e-12)
    assert _accuracy(proba, labels) > 0.85
    decoder.calibrate(*_nirs(40, 2))
    loaded = FnirsDecoder.from_state(*read_model_file(decoder.save(tmp_path / "nirs.npz")))
    assert loaded.temperature == decoder.temperature != 1.0
    np.testing.assert_array_equal(loaded.predict_proba(test), decoder.predict_proba(test))


# fusion -----------------------------------------------------------------------------------
def test_fusion_weights_drop_a_useless_modality_and_fuse_independent_evidence():
    rng = np.random.default_rng(0)
    targets = np.arange(400) % 2
    evidence = 2 * targets - 1.0

    def logp(noise):
        return log_softmax(
            np.column_stack([-evidence, evidence]) + noise * rng.normal(0, 1, (400, 2))
        )

    weights, summary = fusion_weights(logp(1.5), log_softmax(rng.normal(0, 1, (400, 2))), targets)
    assert summary["choice"] == "eeg" and weights[1] == 0 and weights[0] > 0
    weights, summary = fusion_weights(logp(2.0), logp(2.0), targets)
    assert summary["choice"] == "fused" and weights.min() > 0
    assert summary["nll"]["fused"] < min(summary["nll"]["eeg"], summary["nll"]["nirs"])


def test_hybrid_ignores_a_useless_fnirs():
    eeg, labels = _eeg(80, 0)
    nirs, _ = _nirs(80, 1, amplitude=0.0)
    hybrid = HybridDecoder().fit({"eeg": eeg, "nirs": nirs}, labels, INFO, np.arange(80))
    assert hybrid.weights[1] == 0 and hybrid.fusion["choice"] == "eeg"
    test, test_labels = _eeg(200, 2)
    nirs_test, _ = _nirs(200, 3, amplitude=0.0)
    alone = TangentSpaceDecoder().fit(eeg, labels, DecoderInfo(CLASSES, eeg=EEG))
    fused = hybrid.predict_proba({"eeg": test, "nirs": nirs_test})
    assert _accuracy(fused, test_labels) >= _accuracy(alone.predict_proba(test), test_labels)


def test_hybrid_of_two_informative_modalities_beats_each_alone():
    eeg, labels = _eeg(80, 0, ratio=0.94)
    nirs, _ = _nirs(80, 1, amplitude=0.2)
    hybrid = HybridDecoder().fit({"eeg": eeg, "nirs": nirs}, labels, INFO, np.arange(80))
    assert hybrid.fusion["choice"] == "fused" and hybrid.weights.min() > 0
    test = {"eeg": _eeg(300, 2, ratio=0.94)[0], "nirs": _nirs(300, 3, amplitude=0.2)[0]}
    test_labels = _labels(300)
    fused = _accuracy(hybrid.predict_proba(test), test_labels)
    assert fused > _accuracy(hybrid.eeg.predict_proba(test["eeg"]), test_labels) + 0.03
    assert fused > _accuracy(hybrid.nirs.predict_proba(test["nirs"]), test_labels) + 0.03


def test_hybrid_saves_and_loads_bit_exactly(tmp_path):
    eeg, labels = _eeg(40, 0, ratio=0.9)
    nirs, _ = _nirs(40, 1, amplitude=0.3)
    hybrid = HybridDecoder(eeg_config={"c": 0.5}, nirs_config={"baseline_s": 2.0},
                           alignment="riemann", folds=3)  # fmt: skip
    hybrid.fit({"eeg": eeg, "nirs": nirs}, labels, INFO, np.arange(40))
    hybrid.calibrate({"eeg": _eeg(40, 2, 0.9)[0], "nirs": _nirs(40, 3, 0.3)[0]}, _labels(40))
    loaded = HybridDecoder.from_state(*read_model_file(hybrid.save(tmp_path / "hybrid.npz")))
    test = {"eeg": _eeg(20, 4, 0.9)[0], "nirs": _nirs(20, 5, 0.3)[0]}
    assert loaded.config() == hybrid.config() and loaded.fusion == hybrid.fusion
    assert loaded.info == hybrid.info and loaded.temperature == hybrid.temperature
    assert loaded.eeg.alignment_kind == "none" and loaded.alignment_kind == "riemann"
    np.testing.assert_array_equal(loaded.weights, hybrid.weights)
    np.testing.assert_array_equal(loaded.predict_proba(test), hybrid.predict_proba(test))


def test_hybrid_fuses_a_pretrained_eeg_decoder_and_owns_its_alignment():
    eeg, labels = _eeg(40, 0)
    pretrained = TangentSpaceDecoder(alignment="euclidean").fit(
        *_eeg(40, 9), DecoderInfo(CLASSES, eeg=EEG)
    )
    hybrid = HybridDecoder.from_parts(pretrained, FnirsDecoder(baseline_s=0.5), folds=3)
    assert hybrid.alignment_kind == "euclidean" and hybrid.eeg.alignment_kind == "none"
    assert hybrid.config()["nirs_config"] == {"alignment": "none", "baseline_s": 0.5}
    windows = {"eeg": eeg, "nirs": _nirs(40, 1)[0]}
    hybrid.fit(windows, labels, INFO, np.arange(40))
    assert hybrid.eeg.alignment is None and hybrid.alignment is not None
    hybrid.fine_tune(windows, labels, strategy="head", groups=np.arange(40))
    assert hybrid.fusion["folds"] == 3
    with pytest.raises(ValueError, match="matches the pretrained model"):
        other = DecoderInfo(CLASSES, InputSpec(EEG.ch_names, 500.0, 0.5), NIRS)
        HybridDecoder(eeg=pretrained).fit(windows, labels, other)
    with pytest.raises(ValueError, match="give the alignment to the hybrid only"):
        HybridDecoder(eeg=pretrained, alignment="riemann")


def test_hybrid_with_too_few_trials_uses_the_eeg_and_refuses_bad_input():
    eeg, labels = _eeg(8, 0)
    nirs, _ = _nirs(8, 1)
    hybrid = HybridDecoder().fit(
        {"eeg": eeg, "nirs": nirs}, labels, INFO, np.arange(8) % 2
    )  # one trial per class
    assert hybrid.fusion == {"choice": "eeg", "folds": 0}
    np.testing.assert_array_equal(hybrid.weights, [1.0, 0.0])
    with pytest.raises(TypeError, match="takes a dict"):
        hybrid.predict_proba(eeg)
    with pytest.raises(ValueError, match="as many fNIRS windows"):
        hybrid.predict_proba({"eeg": eeg, "nirs": nirs[:2]})
    with pytest.raises(ValueError, match="registered EEG decoder"):
        HybridDecoder(eeg_kind="fnirs")
