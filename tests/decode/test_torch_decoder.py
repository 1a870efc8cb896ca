import json
import warnings

import numpy as np
import pytest
import torch

from bci.decode import DecoderInfo, InputSpec
from bci.decode.torch_decoder import EEGNetDecoder, ShallowDecoder

INFO = DecoderInfo(("left", "right"), eeg=InputSpec(("C3", "Cz", "C4", "CP1"), 250.0, 1.0))
FAMILIES = [EEGNetDecoder, ShallowDecoder]


def _data(n: int = 80, seed: int = 0, mixing_seed: int = 0, gain: float = 1.0):
    """Lateralized power, like ERD: class ``left`` halves channel 0, ``right`` channel 2."""
    rng = np.random.default_rng(seed)
    labels = np.array(["left", "right"] * (n // 2))
    mixing = np.random.default_rng(100 + mixing_seed).standard_normal((4, 4)) + 2 * np.eye(4)
    windows = rng.standard_normal((n, 250, 4)) @ mixing * gain
    windows[labels == "left", :, 0] *= 0.5
    windows[labels == "right", :, 2] *= 0.5
    return windows, labels


def _accuracy(decoder, windows, labels) -> float:
    return float(np.mean(np.asarray(INFO.classes)[decoder.logits(windows).argmax(1)] == labels))


@pytest.mark.parametrize("family", FAMILIES)
def test_learns_lateralized_power(family):
    windows, labels = _data()
    decoder = family(epochs=40, seed=0).fit(windows, labels, INFO, groups=np.arange(80) % 40)
    test, test_labels = _data(60, seed=1)
    assert _accuracy(decoder, test, test_labels) > 0.85
    proba = decoder.predict_proba(test[:1])
    assert proba.shape == (1, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert decoder.best_epoch is not None and len(decoder.history) <= 40


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_tune_head_and_full_adapt_to_a_shifted_subject(family):
    windows, labels = _data()
    pretrained = family(epochs=40, seed=0).fit(windows, labels, INFO, groups=np.arange(80) % 40)
    # another subject: other mixing, 3× the amplitude (no alignment, so the pretrained network
    # is near chance on it)
    calibration, calibration_labels = _data(40, seed=2, mixing_seed=1, gain=3.0)
    test, test_labels = _data(60, seed=3, mixing_seed=1, gain=3.0)
    before = _accuracy(pretrained, test, test_labels)
    groups = np.arange(40) % 20
    after = {}
    for strategy in ("head", "full"):
        decoder = type(pretrained).from_state(*pretrained.state())
        decoder.fine_tune(calibration, calibration_labels, strategy, groups=groups)
        assert decoder.history, strategy
        after[strategy] = _accuracy(decoder, test, test_labels)
    assert min(after.values()) >= max(before, 0.85), (before, after)
    assert max(after.values()) >= before + 0.1, (before, after)
    # head-only training leaves every other weight as pretrained
    head = type(pretrained).from_state(*pretrained.state())
    head.fine_tune(calibration, calibration_labels, "head", groups=groups)
    changed = {
        name
        for name, value in head.network.state_dict().items()
        if not torch.equal(value, pretrained.network.state_dict()[name])
    }
    assert changed and all(name.startswith("head.") for name in changed)


def test_refuses_wrong_shapes_and_settings_with_what_to_do():
    windows, labels = _data(20)
    decoder = EEGNetDecoder(epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n_windows, 250, 4\)"):
        decoder.fit(windows[:, :200], labels, INFO)
    decoder.fit(windows, labels, INFO)
    for wrong in (windows[:, :, :3], windows[:, :125], windows[0]):
        with pytest.raises(ValueError, match=r"1 s at 250 Hz, 4 channels\), got"):
            decoder.predict_proba(wrong)
    with pytest.raises(ValueError, match="groups must give the trial of each window"):
        decoder.fine_tune(windows, labels, "full", groups=np.arange(3))
    wrong_settings = [{"device": "tpu"}, {"epochs": 0}, {"lr": -1.0}, {"validation": 0.6},
                      {"dropout": 1.0}, {"threads": 0}, {"train_threads": -1},
                      {"batch_size": 2.5}]  # fmt: skip
    for kwargs in wrong_settings:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            EEGNetDecoder(**kwargs)
    with pytest.raises(ValueError, match="format must be 'torchscript', got 'onnx'"):
        decoder.export("model.onnx", format="onnx")
    with pytest.raises(ValueError, match="window"):
        ShallowDecoder(epochs=1).fit(
            windows[:, :25],
            labels,
            DecoderInfo(INFO.classes, eeg=InputSpec(INFO.eeg.ch_names, 250.0, 0.1)),
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_says_what_to_use():
    windows, labels = _data(20)
    with pytest.raises(RuntimeError, match="device='cpu'"):
        EEGNetDecoder(device="cuda", epochs=1).fit(windows, labels, INFO)


def test_early_stopping_restores_the_weights_of_the_lowest_validation_loss():
    # random labels: the validation loss can only get worse once the network memorizes
    windows, _ = _data(80)
    labels = np.random.default_rng(5).permutation(np.array(["left", "right"] * 40))
    groups = np.arange(80) // 4
    decoder = ShallowDecoder(epochs=200, patience=5, lr=1e-2, dropout=0.0, validation=0.25)
    decoder.fit(windows, labels, INFO, groups=groups)
    val_losses = [record["val_loss"] for record in decoder.history]
    assert decoder.best_epoch == int(np.argmin(val_losses))
    assert decoder.best_epoch < len(val_losses) - 1 < 199  # stopped early, past the best
    train, val = decoder.validation_split(np.asarray(INFO.classes).searchsorted(labels), groups)
    assert not set(groups[train]) & set(groups[val])  # whole trials
    assert 0.2 <= len(val) / len(labels) <= 0.3
    targets = torch.as_tensor(np.asarray(INFO.classes).searchsorted(labels[val]))
    restored = torch.nn.functional.cross_entropy(
        torch.as_tensor(decoder.logits(windows[val])), targets
    )
    assert restored.item() == pytest.approx(min(val_losses), rel=1e-4)


def test_too_few_trials_train_every_epoch_without_validation():
    windows, labels = _data(8)
    decoder = ShallowDecoder(epochs=4).fit(windows, labels, INFO, groups=np.arange(8) % 4)
    assert len(decoder.history) == 4 and decoder.best_epoch is None
    assert "val_loss" not in decoder.history[0]
    assert decoder.validation_split(np.arange(8) % 2, np.arange(8) % 4)[1].size == 0


def test_training_is_seeded_and_leaves_global_torch_state_alone():
    windows, labels = _data(40)
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    first = EEGNetDecoder(epochs=3, seed=7).fit(windows, labels, INFO)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    second = EEGNetDecoder(epochs=3, seed=7).fit(windows, labels, INFO)
    np.testing.assert_array_equal(first.logits(windows), second.logits(windows))
    other = EEGNetDecoder(epochs=3, seed=8).fit(windows, labels, INFO)
    assert not np.array_equal(first.logits(windows), other.logits(windows))
    assert torch.get_num_threads() == threads  # inference gives the thread count back


def test_config_is_json_and_builds_an_unfitted_twin():
    decoder = ShallowDecoder(alignment="riemann", device="cpu", epochs=5, lr=3e-4, dropout=0.3)
    config = json.loads(json.dumps(decoder.config()))
    twin = ShallowDecoder(**config)
    assert twin.config() == decoder.config()
    assert twin.info is None and twin.alignment_kind == "riemann" and twin.dropout == 0.3


def test_internal_rate_sets_the_block_average():
    windows, labels = _data(20)
    decoder = EEGNetDecoder(epochs=1, internal_rate=100.0).fit(windows, labels, INFO)
    assert decoder.decimation == 2  # 250 Hz → 125 Hz
    x = decoder._to_tensor(windows[:3])
    assert x.shape == (3, 4, 125) and x.dtype == torch.float32
    expected = windows[:3].reshape(3, 125, 2, 4).mean(axis=2).transpose(0, 2, 1)
    np.testing.assert_allclose(x.numpy(), expected / decoder.input_scale, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no padding or tracing warnings at inference
        decoder.predict_proba(windows[:1])
