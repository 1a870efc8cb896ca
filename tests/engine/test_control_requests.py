"""The control channel against bad input and forged requests, over a real socket: every
malformed request gets an error and changes nothing, the serving thread survives it all (and
emergency-stops the session if it ever ends on its own), the per-session secret guards every
command but estop and status, and replays are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import subprocess
import sys
import time

import pytest

from bci.engine.control import ControlInbox, check_command, send_command
from bci.engine.control_auth import FactLimiter, canonical, find_session, runtime_file, sign
from bci.engine.control_request import MAX_NOTE_CHARS
from tests.conftest import wait_for
from tests.engine.control_clients import RawClient, Served


@pytest.fixture
def served():
    served = Served()
    yield served
    served.close()


@pytest.fixture
def client(served):
    client = RawClient(served.address)
    yield client
    client.close()


def _secret(served: Served) -> bytes:
    return bytes.fromhex(find_session(served.address)["secret"])


MALFORMED = [
    pytest.param([b'{"cmd": "status"}', b"x"], "one frame of JSON, got 2", id="two-frames"),
    pytest.param([b'{"cmd": "estop"}', b'{"cmd": "estop"}', b"3"], "got 3 frames",
                 id="three-frames"),
    pytest.param([], "got 0 frames", id="delimiter-only"),
    pytest.param([b'{"cmd": "note", "text": "' + b"a" * 9000 + b'"}'], "at most 8192 bytes",
                 id="oversized"),
    pytest.param([b"\xff\xfe\x00{"], "not UTF-8", id="not-utf8"),
    pytest.param([b""], "not JSON", id="empty"),
    pytest.param([b'{"cmd": "status"'], "not JSON", id="truncated-json"),
    pytest.param([b"[" * 4000 + b"]" * 4000], "nests too deeply", id="deep-json"),
    pytest.param([b'{"cmd": "status", "n": ' + b"7" * 5000 + b"}"], "not JSON", id="huge-int"),
    pytest.param([b'["estop"]'], "JSON object", id="a-list"),
    pytest.param([b'"estop"'], "JSON object", id="a-string"),
    pytest.param([b"null"], "JSON object", id="null"),
    pytest.param([b'{"cmd": 5}'], '"cmd" one of', id="cmd-int"),
    pytest.param([b'{"cmd": ["estop"]}'], '"cmd" one of', id="cmd-list"),
    pytest.param([b'{"cmd": "explode"}'], "'explode'", id="unknown-cmd"),
    pytest.param([b'{"cmd": "fact", "fact": "monitor"}'], "never accepted from outside",
                 id="internal-fact"),
    pytest.param([b'{"cmd": "status", "who": 5}'], '"who" is a name', id="who-int"),
    pytest.param([b'{"cmd": "status", "who": "' + b"w" * 65 + b'"}'], '"who" is a name',
                 id="who-too-long"),
    pytest.param([b'{"cmd": "rearm", "confirm": "yes"}'], '"confirm" is true or false',
                 id="confirm-str"),
    pytest.param([b'{"cmd": "note", "text": {"a": 1}}'], '"text" is a string', id="text-dict"),
    pytest.param([b'{"cmd": "status", "sudo": true}'], "unknown field", id="unknown-field"),
    pytest.param([b'{"cmd": "rearm", "confirm": true}'], "needs the session's secret",
                 id="rearm-unsigned"),
]  # fmt: skip


@pytest.mark.parametrize(("frames", "error"), MALFORMED)
def test_a_malformed_request_gets_an_error_and_changes_nothing(served, client, frames, error):
    reply = client.ask(*frames)
    assert reply is not None and reply["ok"] is False and error in reply["error"], reply
    assert len(reply["error"]) <= 600
    # the thread is still there, answering: an emergency stop goes through at once
    assert send_command(served.address, {"cmd": "estop", "who": "test"})["ok"]
    assert [c["cmd"] for c in served.engine.commands] == ["estop"]
    assert served.server.failed is None


def test_frames_sent_without_a_delimiter_are_answered_too(served, client):
    reply = client.ask(b'{"cmd": "status"}', b"x", delimiter=False)
    assert reply["ok"] is False and "2 frames" in reply["error"]
    assert client.ask(b'{"cmd": "status"}', delimiter=False)["echo"] == "status"


def test_a_frame_above_maxmsgsize_drops_that_connection_only(served, client):
    client.send(b"x" * (64 * 1024 + 1))
    assert client.receive(timeout_s=0.3) is None  # libzmq closed the connection: no reply
    assert send_command(served.address, {"cmd": "estop"})["ok"]  # others go on
    assert served.server.failed is None


def test_an_estop_is_carried_out_whatever_else_it_holds(served, client):
    reply = client.ask(json.dumps({"cmd": "estop", "who": 5, "confirm": "x", "junk": [1]}).encode())
    assert reply == {"ok": True, "echo": "estop"}
    client.send_json({"cmd": "estop", "who": "intruder"})
    assert client.receive()["ok"]
    assert send_command(served.address, {"cmd": "estop", "who": "test"})["ok"]  # signed
    assert [c["who"] for c in served.engine.commands] == [
        "unnamed client (unverified)", "intruder (unverified)", "test"]  # fmt: skip


def test_estop_and_status_need_no_secret(served, client):
    client.send_json({"cmd": "status"})
    assert client.receive() == {"ok": True, "echo": "status"}
    client.send_json({"cmd": "estop", "who": "x", "ts": 1, "nonce": "n" * 16, "hmac": "0" * 64})
    assert client.receive()["ok"]  # a forged signature on an estop: still carried out
    assert [c["cmd"] for c in served.engine.commands] == ["status", "estop"]


def test_guarded_commands_need_a_fresh_correct_signature(served, client):
    secret = _secret(served)
    for cmd in ("rearm", "stop", "pause", "resume", "note"):
        client.send_json({"cmd": cmd, "confirm": True, "text": "x"} if cmd == "rearm" else
                         {"cmd": cmd, "text": "x"} if cmd == "note" else {"cmd": cmd})  # fmt: skip
        assert "needs the session's secret" in client.receive()["error"]
    forged = sign({"cmd": "stop"}, secrets.token_bytes(32))
    client.send_json(forged)
    assert "does not match" in client.receive()["error"]
    stale = {"cmd": "stop", "ts": time.time() - 30, "nonce": secrets.token_hex(16)}
    stale["hmac"] = hmac.new(secret, canonical(stale), hashlib.sha256).hexdigest()
    client.send_json(stale)
    assert "stale replay" in client.receive()["error"]
    tampered = sign({"cmd": "note", "text": "hello"}, secret) | {"text": "goodbye"}
    client.send_json(tampered)
    assert "does not match" in client.receive()["error"]
    for field in ("ts", "nonce", "hmac"):
        broken = sign({"cmd": "stop"}, secret) | {field: None}
        client.send_json(broken)
        assert f'"{field}"' in client.receive()["error"]
    valid = sign({"cmd": "stop", "who": "op"}, secret)
    client.send_json(valid)
    assert client.receive() == {"ok": True, "echo": "stop"}
    client.send_json(valid)  # captured and replayed
    assert "received before" in client.receive()["error"]
    assert [(c["cmd"], c.get("who")) for c in served.engine.commands] == [("stop", "op")]
    # refusals of guarded commands are recorded (as facts, so that the session's events say so)
    assert wait_for(lambda: len(served.engine.facts_of("control_refused")) >= 5, 2)
    refused = served.engine.facts_of("control_refused")
    assert refused[0]["command"] == "rearm" and "secret" in refused[0]["reason"]


def test_send_command_signs_by_itself_on_this_machine(served):
    assert send_command(served.address, {"cmd": "rearm", "confirm": True, "who": "me"}) == {
        "ok": True, "echo": "rearm"}  # fmt: skip
    assert served.engine.commands[-1] == {"cmd": "rearm", "confirm": True, "who": "me"}


def test_a_long_note_is_cut_and_the_reply_says_so(served):
    reply = send_command(served.address, {"cmd": "note", "text": "n" * 3000})
    assert reply["ok"] and f"first {MAX_NOTE_CHARS} characters (it had 3000)" in reply["cut"]
    assert served.engine.commands[-1]["text"] == "n" * MAX_NOTE_CHARS
    # a client that does not cut it itself: the server does, and says so
    client = RawClient(served.address)
    try:
        client.send_json(sign({"cmd": "note", "text": "m" * 2500}, _secret(served)))
        assert "(it had 2500)" in client.receive()["cut"]
    finally:
        client.close()
    assert served.engine.commands[-1]["text"] == "m" * MAX_NOTE_CHARS


def test_a_stalled_engine_or_client_does_not_hold_up_an_estop(served, client):
    served.engine.answering.clear()  # the engine is busy: status requests wait
    for _ in range(40):
        client.send_json({"cmd": "status"})
    replies = client.drain(8, timeout_s=2)  # beyond 32 waiting: "busy" at once
    assert len(replies) == 8 and all("busy" in r["error"] for r in replies)
    stoppers = [RawClient(served.address) for _ in range(3)]
    try:
        for stopper in stoppers:
            stopper.send_json({"cmd": "estop", "who": "other"})
        # taken at once, not behind the 32 waiting; while one stop is on its way to the engine
        # the next ride on it, so a flood of stops cannot flood the engine
        assert wait_for(lambda: len(served.server._pending) == 35, 1)
        served.engine.answering.set()
        for stopper in stoppers:
            assert stopper.receive() == {"ok": True, "echo": "estop"}
    finally:
        for stopper in stoppers:
            stopper.close()
    assert len(client.drain(32)) == 32
    assert [c["cmd"] for c in served.engine.commands].count("estop") == 1


def test_the_serving_thread_emergency_stops_if_it_ever_ends(served, client, monkeypatch):
    def broken(frames):
        raise RuntimeError("boom")

    monkeypatch.setattr(served.server, "_handle", broken)
    client.send_json({"cmd": "status"})
    assert wait_for(lambda: served.server.failed is not None, 3)
    assert wait_for(lambda: served.engine.commands, 3)
    assert served.engine.commands == [{"cmd": "estop", "who": "control channel",
                                       "reason": "the control channel failed: RuntimeError: "
                                       "boom"}]  # fmt: skip
    assert wait_for(lambda: served.engine.facts_of("control_channel_failed"), 3)
    assert "boom" in served.engine.facts_of("control_channel_failed")[0]["reason"]


def test_the_secret_is_private_named_after_its_address_and_removed_at_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROLOOP_RUNTIME_DIR", str(tmp_path / "run"))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    killed = tmp_path / "run" / "control-127.0.0.1-1.json"  # a session killed before its stop
    killed.parent.mkdir(mode=0o700)
    killed.write_text(json.dumps({"pid": int(gone.stdout), "secret": "00"}))
    served = Served()
    assert not killed.exists()
    try:
        path = runtime_file(served.address)
        assert path.parent == tmp_path / "run"
        assert path.name == f"control-127.0.0.1-{served.address.rpartition(':')[2]}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert len(bytes.fromhex(json.loads(path.read_text())["secret"])) == 32
        assert send_command(served.address, {"cmd": "stop"})["ok"]
    finally:
        served.close()
    assert not path.exists()
    assert os.listdir(tmp_path / "run") == []


def test_check_command_and_post_fact_keep_facts_internal():
    with pytest.raises(ValueError, match="never accepted from outside"):
        check_command({"cmd": "fact", "fact": "monitor"})
    inbox = ControlInbox()
    inbox.post_fact("monitor", process="recorder", error="gone")
    with pytest.raises(ValueError, match="cmd"):
        inbox.post_fact("monitor", cmd="rearm", confirm=True)
    with pytest.raises(ValueError, match="kind"):
        inbox.post_fact("")
    [(command, future)] = list(inbox.drain())
    assert command == {"cmd": "fact", "fact": "monitor", "process": "recorder", "error": "gone"}
    assert not future.done()


def test_refusals_are_recorded_at_a_bounded_rate():
    posted, now = [], [0.0]
    limiter = FactLimiter(lambda kind, **detail: posted.append(detail), rate_per_s=2, burst=3,
                          clock=lambda: now[0])  # fmt: skip
    assert [limiter("control_refused", n=i) for i in range(10)] == [True] * 3 + [False] * 7
    now[0] = 1.0  # two more allowed; the first says what was left out
    assert limiter("control_refused", n=10) and limiter("control_refused", n=11)
    assert not limiter("control_refused", n=12)
    assert posted[3] == {"n": 10, "suppressed": 7} and "suppressed" not in posted[4]
