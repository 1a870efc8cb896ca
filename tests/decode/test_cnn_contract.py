"""Every registered network builds at many shapes, runs, saves and loads bit-exactly inside a
decoder, and exports to TorchScript with the same logits."""

import numpy as np
import pytest
import torch

from bci.decode import DecoderInfo, InputSpec
from bci.decode.base import read_model_file
from bci.decode.cnn import ARCHITECTURES
from bci.decode.torch_decoder import EEGNetDecoder, ShallowDecoder, TorchDecoder

# (n_channels, n_samples, sfreq): few and many channels, 0.5–2 s, 100 Hz to 1 kHz
SHAPES = [(3, 50, 100.0), (11, 128, 128.0), (64, 125, 125.0), (8, 2000, 1000.0), (22, 150, 100.0)]


def _decoder_class(name: str) -> type[TorchDecoder]:
    return type(f"{name}Decoder", (TorchDecoder,), {"kind": name, "architecture": name})


def test_registry_names_the_decoder_families():
    assert ARCHITECTURES == {"eegnet": ARCHITECTURES["eegnet"], "shallow": ARCHITECTURES["shallow"]}
    assert (EEGNetDecoder.architecture, ShallowDecoder.architecture) == ("eegnet", "shallow")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize(("n_channels", "n_samples", "sfreq"), SHAPES)
def test_network_builds_runs_and_its_fused_copy_agrees(name, n_channels, n_samples, sfreq):
    torch.manual_seed(0)
    network = ARCHITECTURES[name](n_channels, n_samples, 3, sfreq)
    assert isinstance(network.head, torch.nn.Module)
    x = torch.randn(4, n_channels, n_samples)
    network.train()
    network(x).sum().backward()  # one training pass moves the batch-norm statistics
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
    network.eval()
    with torch.no_grad():
        logits = network(x)
        assert logits.shape == (4, 3)
        assert torch.isfinite(logits).all()
        if hasattr(network, "fused"):
            fused = network.fused()
            torch.testing.assert_close(fused(x), logits, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(fused(x[:1]), logits[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_network_refuses_a_window_too_short(name):
    with pytest.raises(ValueError, match="longer window"):
        ARCHITECTURES[name](8, 10, 2, 100.0)


# (channels, sfreq, window_s, alignment)
DECODER_SHAPES = [(3, 100.0, 0.5, "none"), (11, 500.0, 1.0, "euclidean"), (4, 250.0, 2.0, "none")]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize(("n_channels", "sfreq", "window_s", "alignment"), DECODER_SHAPES)
def test_decoder_saves_loads_bit_exactly_and_exports(
    tmp_path, name, n_channels, sfreq, window_s, alignment
):
    info = DecoderInfo(
        ("a", "b", "c"), eeg=InputSpec(tuple(f"E{i}" for i in range(n_channels)), sfreq, window_s)
    )
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((30, info.eeg.n_samples, n_channels)) * 10
    labels = np.array(["a", "b", "c"] * 10)
    decoder = _decoder_class(name)(alignment=alignment, epochs=2, seed=1)
    decoder.fit(windows, labels, info, groups=np.arange(30) % 15)
    decoder.temperature = 1.7
    test = rng.standard_normal((5, info.eeg.n_samples, n_channels)) * 10

    loaded = type(decoder).from_state(*read_model_file(decoder.save(tmp_path / "model.npz")))
    assert loaded.config() == decoder.config()
    assert loaded.temperature == decoder.temperature
    np.testing.assert_array_equal(loaded.predict_proba(test), decoder.predict_proba(test))
    np.testing.assert_array_equal(loaded.predict_proba(test[:1]), decoder.predict_proba(test[:1]))

    exported = torch.jit.load(str(decoder.export(tmp_path / "model.pt")))
    for batch in (test, test[:1]):  # traced with a batch of 2: the batch size stays free
        logits = exported(torch.as_tensor(batch, dtype=torch.float32)).numpy()
        np.testing.assert_allclose(logits, decoder.logits(batch), rtol=1e-4, atol=1e-4)
