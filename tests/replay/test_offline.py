"""Offline replay: a recorded session's inputs through the same stages give back its decoder
outputs and stimulation commands; another model or setting says what would have changed."""

from __future__ import annotations

import json
import shutil
import threading
import uuid

import mne
import numpy as np
import pytest

from bci.cli import main
from bci.engine.control import ControlInbox
from bci.engine.session import run_session
from bci.protocol import ProtocolError, find_protocol, load_protocol
from bci.replay import RecordingError, load_recording
from bci.replay.offline import replay_offline
from bci.streams import STIM_CHANNELS, STIM_ORIGINS, stream_names
from tests.conftest import wait_for

TOL = 1e-6
DEMO_MODEL = find_protocol("demo").parent.parent / "models" / "demo-eegnet.npz"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A recorded closed-loop session (tangent-space decoder, proportional tDCS) with an
    operator's emergency stop and re-arm in its closed loop."""
    out = tmp_path_factory.mktemp("offline") / "session"
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    overrides = [
        f"session.prefix={prefix}", "control.address=tcp://127.0.0.1:0", "source.fnirs=false",
        "decoder.kind=riemann", "decoder.model=", "controller.abstain_below=0",
        "blocks.0.duration_s=1", "blocks.1.trials=8", "blocks.1.cue_s=2.5",
        "blocks.1.iti_s=[0.5, 0.6]", "blocks.3.duration_s=11", "blocks.4.duration_s=1",
    ]  # fmt: skip
    protocol, text = load_protocol("demo", overrides)
    inbox, engines, result = ControlInbox(), [], {}

    def run() -> None:
        result["summary"], result["record"] = run_session(
            protocol, "demo", text, out, progress=False, inbox=inbox, on_engine=engines.append,
            overrides=overrides, note="offline replay test",
        )  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert wait_for(lambda: engines and engines[0].block and
                    engines[0].block.kind == "closed_loop", 120, poll_s=0.05)  # fmt: skip
    wait_for(lambda: False, 5.0)
    note = inbox.post({"cmd": "note", "who": "test", "text": "participant blinked"})
    estop = inbox.post({"cmd": "estop", "who": "test"})
    wait_for(lambda: False, 2.0)
    rearm = inbox.post({"cmd": "rearm", "who": "test", "confirm": True})
    wait_for(lambda: False, 1.5)
    pause = inbox.post({"cmd": "pause", "who": "test"})
    wait_for(lambda: False, 1.0)
    assert engines[0].stim.paused == "test" and engines[0].governor.amplitude == 0
    resume = inbox.post({"cmd": "resume", "who": "test"})
    thread.join(120)
    assert estop.result(1)["ok"] and rearm.result(1)["rearmed"] and note.result(1)["ok"]
    assert pause.result(1)["paused"] and not resume.result(1)["paused"]
    assert result["summary"]["duration_s"] > 1.0 + 8 * 3.0 + 11  # the pause did not eat the block
    return out, prefix, result["summary"]


@pytest.mark.slow
def test_a_recorded_session_replays_to_the_same_outputs_and_commands(session):
    out, prefix, summary = session
    result = replay_offline(out / "session.xdf", progress=False)
    assert result["reproduces"]
    assert result["n_decisions"] == summary["streams"][stream_names(prefix)["decoder"]]["samples"]
    assert result["decoder_max_abs_diff"] <= TOL
    assert result["n_commands"] == result["recorded_commands"] > result["n_decisions"]
    assert result["stim_max_abs_diff"] <= TOL and result["commands_changed"] == 0
    assert result["realtime_factor"] > 1
    # the recording holds what the replay needed: the session record and the commands' origins
    recording = load_recording(out / "session.xdf")
    info = [json.loads(v) for v in recording.stream(name=f"{prefix}-Info").data[:, 0]]
    assert info[0]["note"] == "offline replay test" and info[0]["resolved"]["decoder"]
    model = next(record for record in info if record["kind"] == "model")
    assert model["file"] == "model.npz" and len(model["sha256"]) == 64
    assert {"kind": "note", "text": "participant blinked", "who": "test"} in info
    stim = recording.stream(name=f"{prefix}-Stim").data
    origins = {STIM_ORIGINS[int(o)] for o in stim[:, STIM_CHANNELS.index("origin")]}
    assert {"start", "decision", "end"} <= origins
    # the emergency stop writes a zero exactly when the output was not already at zero
    records = [json.loads(v) for v in recording.stream(name=f"{prefix}-Events").data[:, 0]]
    estop_at = next(r["time"] for r in records if r["kind"] == "operator" and r["cmd"] == "estop")
    before = stim[stim[:, STIM_CHANNELS.index("decided_at")] < estop_at]
    assert ("estop" in origins) == (before[-1, STIM_CHANNELS.index("amplitude")] != 0.0)
    events = [r["kind"] for r in records]
    assert events.count("operator") == 4  # estop, rearm, pause, resume
    assert np.all(np.diff(stim[:, STIM_CHANNELS.index("seq")]) > 0)


@pytest.mark.slow
def test_what_if_another_setting_or_model(session, tmp_path):
    out, _, summary = session
    lower = replay_offline(out / "session.xdf", overrides=["controller.ceiling=0.5"],
                           progress=False)  # fmt: skip
    assert not lower["reproduces"] and lower["decoder_max_abs_diff"] <= TOL
    if summary["stimulation"]["max_amplitude_ma"] > 0.5 + TOL:
        assert lower["stim_max_abs_diff"] > 0.1
    assert lower["max_amplitude"] <= 0.5 + TOL
    other = replay_offline(out / "session.xdf", model=DEMO_MODEL, progress=False)
    assert not other["reproduces"] and other["decoder_max_abs_diff"] > 1e-3
    assert 0 <= other["accuracy"] <= 1
    # the CLI writes the JSON the benchmark and a person read
    code = main(["replay", str(out / "session.xdf"), "--offline", "--json",
                 str(tmp_path / "r.json")])  # fmt: skip
    written = json.loads((tmp_path / "r.json").read_text())
    assert code == 0
    assert {"realtime_factor", "decoder_max_abs_diff", "stim_max_abs_diff",
            "n_decisions"} <= written.keys()  # fmt: skip


@pytest.mark.slow
def test_a_model_that_is_not_the_sessions_is_refused_by_its_hash(session, tmp_path):
    out, _, _ = session
    copy = tmp_path / "session"
    shutil.copytree(out, copy)
    shutil.copy(DEMO_MODEL, copy / "model.npz")
    with pytest.raises(RecordingError, match="SHA-256 differs"):
        replay_offline(copy / "session.xdf", progress=False)
    (copy / "model.npz").unlink()
    with pytest.raises(RecordingError, match="--model"):
        replay_offline(copy / "session.xdf", progress=False)
    with pytest.raises(ProtocolError):
        replay_offline(out / "session.xdf", overrides=["controller.kind=nonsense"],
                       progress=False)  # fmt: skip


def _edf(path, seconds: float = 30.0, sfreq: float = 500.0):
    protocol, _ = load_protocol("demo")
    names = [*protocol.preprocessing.picks, "Fp1", "Fp2", "O1", "O2"]
    rng = np.random.default_rng(0)
    data = rng.normal(0, 10e-6, (len(names), int(seconds * sfreq)))
    raw = mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([5.0, 12.0], [0, 0], ["left", "right"]))
    mne.export.export_raw(path, raw, verbose="error")
    return path


def test_another_labs_edf_is_decided_on_every_hop(tmp_path):
    edf = _edf(tmp_path / "other_lab.edf")
    with pytest.raises(RecordingError, match="--protocol"):
        replay_offline(edf, progress=False)
    result = replay_offline(edf, protocol="demo", model=DEMO_MODEL, progress=False)
    protocol, _ = load_protocol("demo")
    expected = (30.0 - protocol.preprocessing.window_s) / protocol.preprocessing.hop_s + 1
    assert abs(result["n_decisions"] - expected) <= 1
    assert result["decoder_max_abs_diff"] is None and result["stim_max_abs_diff"] is None
    assert result["n_commands"] >= result["n_decisions"]
    assert result["max_amplitude"] <= protocol.stimulator.limits.max_amplitude
