"""The control channel: commands reach an inbox over ZeroMQ, answers come back, bad input is
refused with a message; ``bci control`` and ``bci emulate`` from the command line."""

import json
import threading

import pytest

from bci.cli import main
from bci.engine.control import ControlInbox, ControlServer, check_command, send_command


def _answer(inbox: ControlInbox, stop: threading.Event) -> None:
    """Stand in for the engine loop: answer every command with what it was."""
    while not stop.wait(0.005):
        for command, future in inbox.drain():
            future.set_result({"ok": True, "echo": command["cmd"]})


@pytest.fixture
def server():
    inbox, stop = ControlInbox(), threading.Event()
    loop = threading.Thread(target=_answer, args=(inbox, stop), daemon=True)
    loop.start()
    server = ControlServer(inbox, "tcp://127.0.0.1:0")
    server.start()
    yield server
    stop.set()
    server.stop()


def test_commands_round_trip_through_the_inbox(server):
    assert send_command(server.address, {"cmd": "estop"}) == {"ok": True, "echo": "estop"}
    assert send_command(server.address, {"cmd": "status"})["echo"] == "status"


def test_bad_commands_are_refused_with_what_is_accepted(server):
    import zmq

    with pytest.raises(ValueError, match="estop"):
        check_command({"cmd": "explode"})
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.connect(server.address)
    socket.send_string(json.dumps({"cmd": "explode"}))
    assert socket.poll(3000)
    reply = json.loads(socket.recv())
    socket.close()
    assert reply["ok"] is False and "estop" in reply["error"]


def test_a_taken_port_is_refused_saying_what_to_do(server):
    with pytest.raises(RuntimeError, match=r"tcp://127\.0\.0\.1:0 for a free port"):
        ControlServer(ControlInbox(), server.address).start()


def test_an_engine_that_does_not_answer_is_reported():
    server = ControlServer(ControlInbox(), "tcp://127.0.0.1:0")  # nobody drains the inbox
    server.start()
    try:
        reply = send_command(server.address, {"cmd": "status"}, timeout_s=5)
        assert reply["ok"] is False and "did not answer within 2 s" in reply["error"]
        command, future = next(server.inbox.drain())  # the engine gets to it too late: dropped
        assert command["cmd"] == "status" and future.cancelled()
    finally:
        server.stop()
    with pytest.raises(TimeoutError, match="no engine answered"):
        send_command(server.address, {"cmd": "status"}, timeout_s=0.2)


def test_bci_control_needs_confirm_to_rearm_and_reports_a_missing_engine(server, capsys):
    assert main(["control", "rearm", "--address", server.address]) == 2
    assert "--confirm" in capsys.readouterr().err
    assert main(["control", "rearm", "--confirm", "--address", server.address]) == 0
    assert json.loads(capsys.readouterr().out)["echo"] == "rearm"
    assert main(["control", "status", "--address", "tcp://127.0.0.1:1", "--timeout", "0.2"]) == 1
    assert "NOT delivered" in capsys.readouterr().err
    assert main(["control", "estop", "--address", "127.0.0.1:5557"]) == 2
    assert "tcp://127.0.0.1:5557" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["magstim", "tes"])
def test_bci_emulate_prints_its_port(device, capsys):
    assert main(["emulate", device, "--duration", "0.2"]) == 0
    assert "/dev/pts/" in capsys.readouterr().out


def test_bci_control_says_what_is_wrong_with_its_keys_or_arguments(server, tmp_path, capsys):
    assert main(["control", "status", "extra", "--address", server.address]) == 2
    assert "only keygen takes a name" in capsys.readouterr().err
    missing = str(tmp_path / "no-keys")
    assert main(["control", "status", "--address", server.address, "--keys-dir", missing]) == 2
    assert "bci control keygen" in capsys.readouterr().err
    assert main(["control", "note", "--text", "n" * 2500, "--address", server.address]) == 0
    assert "cut to its first 2000 characters" in json.loads(capsys.readouterr().out)["cut"]
