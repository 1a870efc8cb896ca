"""Every decoder kind fits from a protocol field on virtual-subject calibration data, exactly
as the engine's fit block does it; pretrained models are fine-tuned or refused."""

import numpy as np
import pytest

from bci.decode import DECODERS, load_decoder, select_inputs
from bci.engine.fitting import fit_decoder, holdout_mask, input_indices, session_info
from bci.protocol import ProtocolError, load_protocol
from bci.train.population import simulate_calibration
from bci.train.pretrain import pretrain

FAST = {"eegnet": {"epochs": 3}, "shallow": {"epochs": 3}, "snn": {"epochs": 3}}


@pytest.fixture(scope="module")
def protocol():
    protocol, _ = load_protocol("demo", ["decoder.model=", "blocks.1.trials=16"])
    return protocol


@pytest.fixture(scope="module")
def subject(protocol):
    return simulate_calibration(protocol, seed=7, n_trials=24, order_seed=1)


def _with(protocol, **update):
    return protocol.model_copy(update={"decoder": protocol.decoder.model_copy(update=update)})


def test_holdout_keeps_trials_whole_and_classes_balanced():
    labels = np.repeat(["left", "right"] * 10, 5)
    groups = np.repeat(np.arange(20), 5)
    held = holdout_mask(labels, groups, 0.25)
    assert sorted(set(groups[held])) == sorted(set(groups[held]) - set(groups[~held]))
    # round(0.25 * 10) = 2 trials of 5 windows per class
    assert (labels[held] == "left").sum() == (labels[held] == "right").sum() == 10
    assert not holdout_mask(labels, groups, 0.0).any()


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_every_kind_fits_from_the_protocol_decides_on_engine_batches_and_reloads_exactly(
    protocol, subject, kind, monkeypatch, tmp_path
):
    monkeypatch.setitem(DECODERS, kind, _fast(DECODERS[kind], FAST.get(kind, {})))
    variant = _with(protocol, kind=kind)
    info = session_info(variant, subject.eeg_sfreq, subject.nirs_ch_names, subject.nirs_sfreq)
    decoder, report = fit_decoder(variant, subject.windows, subject.labels, subject.groups, info)
    assert report.n_trials == 24 and report.n_holdout_trials == 6
    assert 0.0 <= report.holdout_accuracy <= 1.0 and report.temperature > 0
    # the engine's batch: one window of each input the decoder reads
    one = {name: value[:1] for name, value in subject.windows.items()}
    proba = decoder.predict_proba(select_inputs(info, one))
    assert proba.shape == (1, 2) and np.isclose(proba.sum(), 1.0)
    # the model file holds everything: the reloaded decoder answers bit for bit the same
    reloaded = load_decoder(decoder.save(tmp_path / f"{kind}.npz"))
    assert reloaded.info == info and reloaded.temperature == decoder.temperature
    batch = select_inputs(info, subject.windows)
    np.testing.assert_array_equal(reloaded.predict_proba(batch), decoder.predict_proba(batch))


def _fast(cls, config):
    """The class with quick training defaults (the registry is patched per test)."""
    if not config:
        return cls

    class Fast(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**config, **kwargs})

    Fast.kind = cls.kind
    return Fast


def test_a_pretrained_model_is_fine_tuned_and_a_mismatched_one_refused(protocol, subject, tmp_path):
    model = pretrain(protocol, "eegnet", seeds=[101, 102], n_trials=12, epochs=2, progress=False)
    path = model.save(tmp_path / "population.npz")
    assert model.provenance.source.startswith("virtual subjects 101-102")
    variant = _with(protocol, kind="eegnet", model=str(path), fine_tune="head")
    info = session_info(variant, subject.eeg_sfreq)
    decoder, report = fit_decoder(variant, subject.windows, subject.labels, subject.groups, info)
    assert report.pretrained == "population.npz" and report.strategy == "head"
    assert decoder.alignment is not None  # this subject's own reference
    assert [step["step"] for step in decoder.provenance.steps] == [
        "pretrain",
        "session calibration",
    ]

    with pytest.raises(ProtocolError) as err:
        load_protocol(
            "demo",
            [
                f"decoder.model={path}",
                "decoder.kind=shallow",
                "preprocessing.bandpass_hz=[4.0, 30.0]",
            ],
        )
    assert any(line.startswith("decoder.kind: got 'shallow'") for line in err.value.lines)
    assert any(line.startswith("preprocessing.bandpass_hz") for line in err.value.lines)
    with pytest.raises(ProtocolError, match="does not exist"):
        load_protocol("demo", ["decoder.model=missing.npz"])


def test_no_holdout_when_a_class_has_too_few_trials():
    labels = np.array(["left"] * 10 + ["right"] * 2)
    groups = np.arange(12)
    assert not holdout_mask(labels, groups, 0.25).any()


def test_a_pretrained_fnirs_model_reads_its_channels_by_name(protocol, subject, tmp_path):
    variant = _with(protocol, kind="fnirs")
    info = session_info(variant, subject.eeg_sfreq, subject.nirs_ch_names, subject.nirs_sfreq)
    model, _ = fit_decoder(variant, subject.windows, subject.labels, subject.groups, info)
    path = model.save(tmp_path / "fnirs.npz")
    # the same montage streamed in reverse channel order
    order = np.arange(len(subject.nirs_ch_names))[::-1]
    shuffled = {**subject.windows, "nirs": subject.windows["nirs"][..., order]}
    names = tuple(np.array(subject.nirs_ch_names)[order])
    session = session_info(variant, subject.eeg_sfreq, names, subject.nirs_sfreq)
    assert input_indices(model, session)["nirs"].tolist() == order.tolist()
    tuned, report = fit_decoder(
        _with(variant, model=str(path)), shuffled, subject.labels, subject.groups, session
    )
    assert report.pretrained == "fnirs.npz" and tuned.info.nirs.ch_names == subject.nirs_ch_names
    with pytest.raises(ValueError, match="lacks channels"):
        input_indices(model, session_info(variant, 500.0, names[:-1], subject.nirs_sfreq))
    with pytest.raises(ProtocolError, match=r"decoder\.alignment: got 'riemann'"):
        load_protocol("demo", ["decoder.alignment=riemann"])
