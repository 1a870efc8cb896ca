"""``bci export`` and ``bci replay`` from the command line: results, and one clear message (exit
2) for bad input."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from bci.cli import main


@pytest.fixture
def edf(tmp_path):
    names = ["C3", "Cz", "C4", "Pz"]
    data = np.random.default_rng(0).normal(0, 10e-6, (len(names), 2000))
    raw = mne.io.RawArray(data, mne.create_info(names, 250.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([1.0, 4.0], [0, 0], ["left", "right"]))
    path = tmp_path / "lab.edf"
    mne.export.export_raw(path, raw, verbose="error")
    return path


def test_export_writes_fif_and_refuses_to_overwrite(edf, tmp_path, capsys):
    out = tmp_path / "lab_raw.fif"
    assert main(["export", str(edf), "--to", "fif", "--out", str(out)]) == 0
    raw = mne.io.read_raw_fif(out, verbose="error")
    assert raw.ch_names == ["C3", "Cz", "C4", "Pz"]
    assert list(raw.annotations.description) == ["left", "right"]
    assert main(["export", str(edf), "--to", "fif", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["replay", "{tmp}/missing.xdf"], "missing.xdf"),
        (["replay", "{tmp}/notes.txt"], ".xdf"),
        (["replay", "{edf}", "--offline"], "--protocol"),
        (["replay", "{edf}", "--json", "{tmp}/r.json"], "--offline"),
        (["replay", "{edf}", "--offline", "--loop"], "real-time"),
        (["replay", "{edf}", "--speed", "0"], "speed"),
        (["export", "{tmp}/missing.edf", "--to", "edf"], "missing.edf"),
    ],
)
def test_bad_input_gets_one_clear_message(argv, says, edf, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a recording")
    argv = [arg.format(tmp=tmp_path, edf=edf) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err
