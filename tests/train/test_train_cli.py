"""``bci train fit`` / ``bci train evaluate`` end to end on files made from virtual subjects."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from bci.cli import main
from bci.decode import DECODERS, load_decoder
from bci.engine.preprocess import eeg_pipeline
from bci.protocol.schema import PreprocessingSection
from tests.train.recordings import simulate, split, write_mne, write_session_xdf, write_snirf

CODES = {"left": "T1", "right": "T2"}
EVENTS = ["--events", "T1=left,T2=right"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of one virtual subject: 24 trials as EDF, the next 24 as BDF."""
    folder = tmp_path_factory.mktemp("runs")
    first, second = split(simulate(seed=2, n_trials=48))
    return write_mne(first, folder / "run1.edf", CODES), write_mne(
        second, folder / "run2.bdf", CODES
    )


def bci(*args) -> int:
    return main([str(arg) for arg in args])


def test_fit_on_edf_then_evaluate_on_bdf_is_above_chance(runs, tmp_path, capsys):
    edf, bdf = runs
    model = tmp_path / "mi.npz"
    assert bci("train", "fit", "--data", edf, *EVENTS, "--model", model) == 0
    out = capsys.readouterr().out
    assert "trained riemann on 24 trials (left 14, right 10; 0 dropped)" in out

    decoder = load_decoder(model)
    assert decoder.kind == "riemann"
    assert decoder.info.classes == ("left", "right")
    assert decoder.info.eeg.ch_names == ("C3", "Cz", "C4") and decoder.info.eeg.sfreq == 250
    assert decoder.preprocessing == PreprocessingSection().model_dump(mode="json")
    provenance = decoder.provenance
    assert dt.datetime.fromisoformat(provenance.created).tzinfo is not None
    assert provenance.software.startswith("neuroloop ")
    assert provenance.source.startswith("run1.edf (sha256 ")
    fit, calibrate = provenance.steps
    assert fit["step"] == "fit" and fit["n_trials"] + calibrate["n_trials"] == 24
    assert fit["cv_folds"] == 5 and 0 <= fit["cv_accuracy"] <= 1
    assert calibrate["temperature"] == decoder.temperature
    assert model.with_suffix(".png").stat().st_size > 0
    # what the engine builds from the model's preprocessing feeds the model
    pre = PreprocessingSection.model_validate(decoder.preprocessing)
    names = simulate(seed=2, n_trials=2).eeg_names
    decoder.check_compatible(eeg_pipeline(pre, names, 250.0).ch_names_out, 250.0)

    result_file = tmp_path / "eval.json"
    assert bci("train", "evaluate", "--data", bdf, *EVENTS, "--model", model,
               "--json", result_file) == 0  # fmt: skip
    result = json.loads(result_file.read_text())
    assert result["n_trials"] == 24
    assert result["chance"] == max(result["n_trials_per_class"].values()) / 24  # majority class
    low, high = result["ci95"]
    assert low <= result["accuracy"] <= high
    assert result["accuracy"] > result["chance"] + 0.15
    assert np.sum(result["confusion"]) == 24
    assert "trial accuracy" in capsys.readouterr().out


def test_cross_validation_over_several_files_needs_no_model(runs, tmp_path):
    result_file = tmp_path / "cv.json"
    assert bci("train", "evaluate", "--data", *runs, *EVENTS, "--cv", 4, "--decoder", "csp",
               "--json", result_file) == 0  # fmt: skip
    result = json.loads(result_file.read_text())
    assert result["mode"] == "cross-validation" and result["cv_folds"] == 4
    assert result["n_trials"] == 48 and [f["name"] for f in result["files"]] == [
        "run1.edf", "run2.bdf",
    ]  # fmt: skip
    assert result["accuracy"] > 0.65
    assert bci("train", "evaluate", "--data", runs[0], *EVENTS, "--cv", 0, "--json",
               result_file) == 2  # fmt: skip


def test_protocol_set_picks_and_window_shape_the_model(runs, tmp_path):
    edf, _ = runs
    protocol = tmp_path / "lab.toml"
    protocol.write_text(
        '[preprocessing]\npicks = ["FC1", "FC2", "C3", "Cz", "C4", "CP1", "CP2"]\n'
        '[decoder]\nkind = "csp"\n[[blocks]]\nkind = "baseline"\nduration_s = 10\n'
    )
    model = tmp_path / "lab.npz"
    assert bci("train", "fit", "--data", edf, *EVENTS, "--model", model, "--protocol", protocol,
               "--set", "preprocessing.notch_hz=60", "--cv", 0, "--holdout", 0) == 0  # fmt: skip
    decoder = load_decoder(model)
    assert decoder.kind == "csp" and decoder.preprocessing["notch_hz"] == 60
    assert decoder.info.eeg.ch_names == ("FC1", "FC2", "C3", "Cz", "C4", "CP1", "CP2")
    assert decoder.temperature == 1.0 and [s["step"] for s in decoder.provenance.steps] == ["fit"]

    band = "preprocessing.bandpass_hz=[8,25]"
    assert bci("train", "fit", "--data", edf, "--events", "T2=right,T1=left", "--model", model,
               "--picks", "all", "--window", 0.5, "--set", band, "--cv", 0) == 0  # fmt: skip
    decoder = load_decoder(model)
    assert decoder.info.classes == ("left", "right")  # the engine's column order
    assert len(decoder.info.eeg.ch_names) == 16 and decoder.info.eeg.window_s == 0.5
    assert decoder.preprocessing["bandpass_hz"] == [8.0, 25.0]


def test_fine_tune_a_pretrained_model_and_refuse_another_rate(runs, tmp_path, capsys):
    edf, bdf = runs
    base, tuned = tmp_path / "base.npz", tmp_path / "tuned.npz"
    assert bci("train", "fit", "--data", edf, *EVENTS, "--model", base, "--cv", 0) == 0
    assert bci("train", "fit", "--data", bdf, *EVENTS, "--model", tuned, "--pretrained", base,
               "--cv", 0) == 0  # fmt: skip
    steps = load_decoder(tuned).provenance.steps
    assert [s["step"] for s in steps] == ["fit", "calibrate", "fine_tune", "calibrate"]
    assert steps[2]["pretrained"] == "base.npz"
    assert "fine-tuned from base.npz (run1.edf" in load_decoder(tuned).provenance.source

    fast = write_mne(simulate(seed=2, n_trials=12, sfreq=500.0), tmp_path / "fast.fif", CODES)
    capsys.readouterr()
    assert bci("train", "fit", "--data", fast, *EVENTS, "--model", tmp_path / "x.npz",
               "--pretrained", base) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "runs at 500 Hz but the decoder was trained at 250 Hz" in err
    assert "Traceback" not in err


@pytest.mark.skipif("fnirs" not in DECODERS, reason="bci.decode.fnirs is not registered yet")
def test_snirf_trains_the_fnirs_decoder(tmp_path):
    first, second = split(simulate(seed=1, n_trials=40, trial_s=12.0, cue_s=5.0, fnirs=True,
                                   n_channels=8))  # fmt: skip
    train, test = (
        write_snirf(first, tmp_path / "a.snirf"),
        write_snirf(second, tmp_path / "b.snirf"),
    )
    model, result_file = tmp_path / "nirs.npz", tmp_path / "nirs.json"
    events = ["--events", "left=left,right=right"]
    assert bci("train", "fit", "--data", train, *events, "--decoder", "fnirs", "--model", model,
               "--cv", 0) == 0  # fmt: skip
    decoder = load_decoder(model)
    assert decoder.info.inputs == ("nirs",) and decoder.info.nirs.window_s == 5.0
    assert decoder.info.nirs.ch_names[:2] == ("S1_D1 hbo", "S1_D1 hbr")
    assert decoder.provenance.steps[0]["epoch_s"] == [0.0, 8.0]
    assert bci("train", "evaluate", "--data", test, *events, "--model", model,
               "--json", result_file) == 0  # fmt: skip
    result = json.loads(result_file.read_text())
    assert result["n_trials"] == 20 and result["accuracy"] > result["chance"]


@pytest.mark.skipif("hybrid" not in DECODERS, reason="bci.decode.hybrid is not registered yet")
def test_neuroloop_xdf_trains_the_hybrid_decoder(tmp_path):
    session = simulate(seed=2, n_trials=16, trial_s=8.0, cue_s=3.0, fnirs=True, n_channels=8)
    xdf = write_session_xdf(session, tmp_path / "session.xdf")
    model = tmp_path / "hybrid.npz"
    events = ["--events", "left=left,right=right"]
    assert bci("train", "fit", "--data", xdf, *events, "--decoder", "hybrid", "--model", model,
               "--cv", 0) == 0  # fmt: skip
    info = load_decoder(model).info
    assert info.inputs == ("eeg", "nirs")
    assert info.eeg.sfreq == 250 and info.nirs.sfreq == 10 and info.nirs.n_samples == 50
    result_file = tmp_path / "hybrid.json"
    assert bci("train", "evaluate", "--data", xdf, *events, "--model", model,
               "--json", result_file) == 0  # fmt: skip
    assert json.loads(result_file.read_text())["n_trials"] == 15  # the first has no fNIRS history


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Three trials of each class."""
    folder = tmp_path_factory.mktemp("short")
    return write_mne(simulate(seed=3, n_trials=6), folder / "short.fif", CODES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{dir}/notes.csv", *EVENTS], "unknown file type '.csv'"),
        (["--data", "{dir}/broken.edf", *EVENTS], "broken.edf: cannot read this EDF file"),
        (["--data", "{short}", "--events", "769=left,770=right"],
         "no event matches the codes ['769', '770']; the file has 'T"),
        (["--data", "{short}", *EVENTS], "too few trials to fit: {'left': 3, 'right': 3}"),
        (["--data", "{short}", *EVENTS, "--picks", "C3,O9"],
         "--picks: ['O9'] not among the EEG channels of every file; available: ['Fz'"),
        (["--data", "{short}", *EVENTS, "--decoder", "lstm"], "--decoder: 'lstm' is not available"),
        (["--data", "{short}", "--events", "T1:left"], "--events: 'T1:left' is not CODE=label"),
        (["--data", "{short}", *EVENTS, "--set", "preprocessing.bandpass_hz=[30,8]"],
         "preprocessing.bandpass_hz: got [30.0, 8.0]; need [low, high]"),
        (["--data", "{short}", *EVENTS, "--pretrained", "{dir}/none.npz"],
         "--pretrained: model file"),
    ],
)  # fmt: skip
def test_bad_input_gets_one_message_and_exit_code_2(short_run, tmp_path, capsys, args, message):
    (tmp_path / "notes.csv").write_text("t,c3\n0,1\n")
    (tmp_path / "broken.edf").write_bytes(b"0       truncated header")
    args = [a.format(dir=tmp_path, short=short_run) for a in args]
    assert bci("train", "fit", *args, "--model", tmp_path / "m.npz") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()


def test_pretrain_writes_a_population_model_and_keeps_held_out_subjects_apart(tmp_path, capsys):
    out = tmp_path / "population.npz"
    args = ["train", "pretrain", "--protocol", "demo", "--decoder", "riemann",
            "--subjects", "101-102", "--trials", "8", "--out", str(out)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    model = load_decoder(out)
    assert model.alignment_kind == "euclidean" and model.alignment is None  # per subject
    assert model.provenance.source.startswith("virtual subjects 101-102 (2)")
    assert "pretrained riemann on 2 virtual subjects" in capsys.readouterr().out
    assert main([*args[:7], "3,101", *args[8:]]) == 2
    assert "reserved for sessions and benchmarks" in capsys.readouterr().err
