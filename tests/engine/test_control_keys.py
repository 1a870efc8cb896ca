"""CURVE keys on the control channel: ``bci control keygen``, an allow-list outside which a key
may only stop (everything else refused and recorded), the key's name recorded as ``who``, and no
listening off the loopback without keys. The clients run as separate processes
(``python -m bci control``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from zmq.auth import load_certificate

from bci.cli import main
from bci.engine.control import ControlInbox, ControlServer, send_command
from bci.protocol import ProtocolError, load_protocol
from tests.conftest import wait_for
from tests.engine.control_clients import RawClient, Served
from tests.engine.sessions import REPO_ROOT


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def keys(tmp_path):
    """A keys folder allowing operator ``alice`` (made by ``bci control keygen``)."""
    folder = tmp_path / "keys"
    assert main(["control", "keygen", "alice", "--dir", str(folder)]) == 0
    return folder


def _bci_control(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bci", "control", *args], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_keygen_makes_private_keys_and_allows_the_operator(keys, capsys):
    made = ["alice.key", "alice.key_secret", "operators", "server.key", "server.key_secret"]
    assert sorted(p.name for p in keys.iterdir()) == made
    assert [p.name for p in (keys / "operators").iterdir()] == ["alice.key"]
    assert _mode(keys) == _mode(keys / "operators") == 0o700
    assert _mode(keys / "alice.key_secret") == _mode(keys / "server.key_secret") == 0o600
    server = load_certificate(keys / "server.key_secret")
    assert main(["control", "keygen", "bob", "--dir", str(keys)]) == 0  # the engine's kept
    assert f"control.keys_dir={keys}" in capsys.readouterr().out
    assert load_certificate(keys / "server.key_secret") == server
    assert main(["control", "keygen", "bob", "--dir", str(keys)]) == 2
    assert "exists" in capsys.readouterr().err
    for bad in ("server", "9lives", "a/b"):
        assert main(["control", "keygen", bad, "--dir", str(keys)]) == 2
        assert "a key name is" in capsys.readouterr().err
    assert main(["control", "keygen"]) == 2 and "NAME" in capsys.readouterr().err


def test_keygen_defaults_to_the_keys_folder_of_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROLOOP_KEYS_DIR", str(tmp_path / "env-keys"))
    assert main(["control", "keygen", "carol"]) == 0
    assert (tmp_path / "env-keys" / "operators" / "carol.key").exists()


@pytest.mark.slow
def test_over_curve_an_unknown_key_is_refused_and_recorded_a_known_one_named(keys, tmp_path):
    served = Served(keys_dir=keys)
    try:
        done = _bci_control("rearm", "--confirm", "--address", served.address, "--keys-dir",
                            str(keys), "--key-name", "alice", "--who", "someone else")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"ok": True, "echo": "rearm"}
        assert served.engine.commands == [{"cmd": "rearm", "confirm": True, "who": "alice"}]
        # mallory has a key of her own and the engine's public key, but is not on the list
        other = tmp_path / "mallory-keys"
        assert main(["control", "keygen", "mallory", "--dir", str(other)]) == 0
        shutil.copyfile(keys / "server.key", other / "server.key")
        done = _bci_control("rearm", "--confirm", "--address", served.address,
                            env={"NEUROLOOP_KEYS_DIR": str(other)})  # fmt: skip
        assert done.returncode == 1
        assert "allow-list" in json.loads(done.stdout)["error"]
        mallory = load_certificate(other / "mallory.key")[0].decode()
        assert wait_for(lambda: len(served.engine.facts_of("control_refused")) >= 2, 5)
        connected, refused = served.engine.facts_of("control_refused")[:2]
        assert connected["key"] == mallory and connected["address"] == "127.0.0.1"
        assert connected["reason"].startswith("unknown key")
        assert refused["command"] == "rearm" and refused["who"] == f"unknown key {mallory}"
        assert [c["cmd"] for c in served.engine.commands] == ["rearm"]  # nothing more came in
        # but an emergency stop is never refused, whoever sends it
        done = _bci_control("estop", "--address", served.address,
                            env={"NEUROLOOP_KEYS_DIR": str(other)})  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert served.engine.commands[-1]["who"] == f"unknown key {mallory}"
        # a client without keys cannot connect either, and is told what it lacks
        plain = RawClient(served.address)
        try:
            plain.send_json({"cmd": "estop"})
            assert plain.receive(timeout_s=0.5) is None
        finally:
            plain.close()
        # on this machine, the session's runtime file says where the keys are
        assert send_command(served.address, {"cmd": "stop"}) == {"ok": True, "echo": "stop"}
        assert served.engine.commands[-1]["who"] == "alice"
        # a key taken off the list is refused from its next command
        (keys / "operators" / "alice.key").unlink()
        reply = send_command(served.address, {"cmd": "status"})
        assert not reply["ok"] and "unknown key" in reply["error"]
    finally:
        served.close()


def test_listening_off_the_loopback_needs_keys(keys, capsys):
    for address in ("tcp://0.0.0.0:0", "tcp://*:0", "tcp://192.168.1.20:5557",
                    "tcp://lab-pc.local:5557"):  # fmt: skip
        with pytest.raises(ValueError, match="bci control keygen NAME") as refused:
            ControlServer(ControlInbox(), address).start()
        assert "--set control.keys_dir=" in str(refused.value)
        with pytest.raises(ProtocolError, match=r"control\.address: .*bci control keygen"):
            load_protocol("demo", [f"control.address={address}"])
    assert main(["check", "demo", "--set", "control.address=tcp://0.0.0.0:5557"]) == 2
    assert "bci control keygen NAME" in capsys.readouterr().err
    load_protocol("demo", ["control.address=tcp://0.0.0.0:5557", f"control.keys_dir={keys}"])
    load_protocol("demo", ["control.address=tcp://localhost:5557"])
    load_protocol("demo", ["control.address=tcp://0.0.0.0:5557", "control.enabled=false"])


def test_with_keys_it_listens_on_every_interface_and_a_local_client_finds_them(keys):
    served = Served("tcp://0.0.0.0:0", keys_dir=keys)
    try:
        local = "tcp://127.0.0.1:" + served.address.rpartition(":")[2]
        assert send_command(local, {"cmd": "pause", "who": "x"}) == {"ok": True, "echo": "pause"}
        assert served.engine.commands == [{"cmd": "pause", "who": "alice"}]
    finally:
        served.close()


def test_keys_missing_are_refused_at_start_saying_what_to_do(tmp_path, keys):
    with pytest.raises(RuntimeError, match=r"no engine keys .*bci control keygen"):
        ControlServer(ControlInbox(), "tcp://127.0.0.1:0", keys_dir=tmp_path / "none").start()
    (keys / "operators" / "alice.key").unlink()
    with pytest.raises(RuntimeError, match="no operator is allowed"):
        ControlServer(ControlInbox(), "tcp://127.0.0.1:0", keys_dir=keys).start()


def test_a_client_without_keys_is_told_the_engine_wants_them(keys, tmp_path, monkeypatch):
    served = Served(keys_dir=keys)
    try:
        monkeypatch.setenv("NEUROLOOP_RUNTIME_DIR", str(tmp_path / "elsewhere"))  # not found
        with pytest.raises(PermissionError, match=r"it wants CURVE keys\. Pass --keys-dir"):
            send_command(served.address, {"cmd": "estop"}, timeout_s=5)
        assert send_command(served.address, {"cmd": "estop"}, keys_dir=keys)["ok"]
        monkeypatch.setenv("NEUROLOOP_KEYS_DIR", str(keys))
        assert send_command(served.address, {"cmd": "status"})["ok"]
    finally:
        served.close()
    assert [c["who"] for c in served.engine.commands] == ["alice", "alice"]


def test_without_a_key_of_ones_own_an_emergency_stop_still_gets_through(keys, tmp_path):
    served = Served(keys_dir=keys)
    try:
        bare = tmp_path / "bare"  # only the engine's public key: enough to reach it
        bare.mkdir()
        shutil.copyfile(keys / "server.key", bare / "server.key")
        assert send_command(served.address, {"cmd": "estop"}, keys_dir=bare)["ok"]
        assert served.engine.commands[-1]["who"].startswith("unknown key ")
        with pytest.raises(ValueError, match="keygen"):  # anything else needs a key
            send_command(served.address, {"cmd": "rearm", "confirm": True}, keys_dir=bare)
    finally:
        served.close()
