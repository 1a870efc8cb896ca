"""The session folder's files, on their own: atomic replacement, the folder claimed once, the
resolved protocol that loads as it is, the running summary's rewrites, a model saved whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bci.engine.session_files import (
    SummaryWriter,
    claim_out_dir,
    default_out_dir,
    save_model_atomic,
    write_atomic,
    write_final_summary,
    write_resolved_protocol,
)
from bci.protocol import load_protocol
from tests.conftest import wait_for


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_atomic(path, "old")
    write_atomic(path, json.dumps({"new": True}))
    assert json.loads(path.read_text()) == {"new": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_folder_holding_a_session_is_refused_and_a_fresh_one_claimed(tmp_path):
    fresh = claim_out_dir(tmp_path / "a" / "b")
    assert fresh.is_dir()
    (fresh / "protocol.toml").write_text("")
    with pytest.raises(FileExistsError, match=r"already holds a session \(.*protocol\.toml\)"):
        claim_out_dir(fresh)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "mine.xdf").write_text("")
    with pytest.raises(FileExistsError, match=r"mine\.xdf"):
        claim_out_dir(tmp_path / "c", recording_name="mine.xdf")


def test_the_default_folder_is_never_one_already_there(tmp_path):
    first = default_out_dir(tmp_path)
    first.mkdir()
    second = default_out_dir(tmp_path)
    assert second != first and second.name.startswith(first.name)


def test_the_resolved_protocol_holds_the_overrides_and_loads_as_it_is(tmp_path):
    overrides = ["stimulator.limits.max_amplitude=1.25", "blocks.1.trials=12",
                 "session.participant=P017"]  # fmt: skip
    protocol, text = load_protocol("demo", overrides)
    path = write_resolved_protocol(tmp_path, protocol, "protocols/demo.toml", text, overrides)
    written = path.read_text()
    assert "stimulator.limits.max_amplitude=1.25" in written.split("\n\n")[0]  # the header
    assert (tmp_path / "protocol.source.toml").read_text() == text
    again, _ = load_protocol(str(path))
    assert again == protocol


def test_the_running_summary_is_rewritten_periodically_and_at_each_block(tmp_path):
    path, state = tmp_path / "summary.json", {"block": 0, "n": 0}

    def build() -> dict:
        state["n"] += 1
        return {"complete": False, "block": state["block"], "n": state["n"]}

    writer = SummaryWriter(path, build, lambda: state["block"]).start()
    try:
        assert json.loads(path.read_text())["n"] == 1  # written before anything runs
        assert wait_for(lambda: json.loads(path.read_text())["n"] >= 2, 3.0)  # every second
        state["block"] = 1
        assert wait_for(lambda: json.loads(path.read_text())["block"] == 1, 0.5)  # at once
    finally:
        writer.stop()
    write_final_summary(path, {"n": -1}, reason="the session failed: RuntimeError: x")
    final = json.loads(path.read_text())
    assert final == {"complete": False, "reason": "the session failed: RuntimeError: x", "n": -1}


class _Decoder:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save(self, path) -> Path:
        Path(path).write_bytes(b"half a model")
        if self.fail:
            raise OSError("disk full")
        return Path(path)


def test_a_model_is_saved_whole_or_not_at_all(tmp_path):
    model = tmp_path / "model.npz"
    save_model_atomic(_Decoder(fail=False), model)
    assert model.read_bytes() == b"half a model"
    model.unlink()
    with pytest.raises(OSError, match="disk full"):
        save_model_atomic(_Decoder(fail=True), model)
    assert list(tmp_path.iterdir()) == []


class _Recorder:
    """What RecordingCheck reads of a recorder: a file that grows while ``growing``."""

    def __init__(self, path: Path) -> None:
        self.path, self.size_bytes, self.growing = path, 0, True

    def problem(self) -> None:
        if self.growing:
            self.size_bytes += 1000
        return None


def test_a_recording_that_stops_growing_is_a_problem(tmp_path):
    from bci.engine.supervise import RecordingCheck

    recorder = _Recorder(tmp_path / "session.xdf")
    check = RecordingCheck(recorder, headroom_s=0.0, still_s=0.3)
    assert wait_for(lambda: check() is None and recorder.size_bytes > 3000, 1.0)
    recorder.growing = False
    assert wait_for(lambda: check() is not None, 2.0)
    assert "has written nothing to" in check() and "although it runs" in check()


def test_a_recording_still_while_the_source_is_silent_is_not_a_problem(tmp_path):
    from bci.engine.supervise import RecordingCheck

    recorder, flowing = _Recorder(tmp_path / "session.xdf"), [True]
    check = RecordingCheck(recorder, headroom_s=0.0, still_s=0.3, flowing=lambda: flowing[0])
    assert wait_for(lambda: check() is None and recorder.size_bytes > 3000, 1.0)
    recorder.growing, flowing[0] = False, False  # the source stalls: nothing to write
    assert not wait_for(lambda: check() is not None, 0.8)
    flowing[0] = True  # it flows again, and still nothing is written
    assert wait_for(lambda: check() is not None, 2.0)
