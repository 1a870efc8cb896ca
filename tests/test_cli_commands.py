"""The operator-facing commands that talk to the network: streams, BrainFlow bridge, bench."""

import json
import threading

import pylsl

from bci.cli import main


def test_streams_lists_what_is_on_the_network(unique_name, capsys):
    info = pylsl.StreamInfo(unique_name, "EEG", 3, 250, "float32", unique_name)
    outlet = pylsl.StreamOutlet(info)
    assert main(["streams", "--wait", "1.5"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if unique_name in x)
    assert "type='EEG' 3 ch 250 Hz" in line
    del outlet


def test_stream_brainflow_synthetic_publishes_then_stops(unique_name, capsys):
    code: list[int] = []
    args = ["stream", "brainflow", "--board", "synthetic", "--name", unique_name,
            "--duration", "4"]  # fmt: skip
    runner = threading.Thread(target=lambda: code.append(main(args)))
    runner.start()
    found = pylsl.resolve_byprop("name", unique_name, timeout=10)
    runner.join(timeout=30)
    assert found and found[0].nominal_srate() == 250 and code == [0]
    assert "pushed" in capsys.readouterr().out


def test_stream_brainflow_bad_board_is_one_clear_error(capsys):
    assert main(["stream", "brainflow", "--board", "nosuchboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nosuchboard" in err


def test_bench_latency_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "latency.json"
    args = ["bench", "latency", "--json", str(out), "--seconds", "3", "--calibration-trials", "4"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for name in ("cnn", "phase"):
        stats = result["neuroloop"][name]
        assert stats["n"] > 0 and 0 < stats["p50"] <= stats["p99"] <= stats["max"]
    assert result["neuroloop"]["cnn"]["n"] > 100  # a decision every 10 ms
    assert result["peers"] == {}
    assert set(result["cpu_percent"]) == {"neuroloop.cnn", "neuroloop.phase"}
    assert result["config"]["channels"] == 64 and "machine" in result
    assert out.with_suffix(".png").stat().st_size > 5000
    assert "neuroloop.cnn" in capsys.readouterr().out
