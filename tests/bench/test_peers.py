"""The peers of ``bci bench latency --peers`` (Timeflux, MNE-LSL), end to end against the virtual
subject."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess

import numpy as np
import pytest

from bci.bench.latency import PEERS, start_peer
from bci.bench.peers import PeerSettings, peer_missing
from bci.decode import DecoderInfo, InputSpec
from bci.decode.torch_decoder import EEGNetDecoder
from bci.engine.session import VirtualSubjectProcess, virtual_subject_command
from bci.protocol import load_protocol
from bci.streams import stream_names

WARMUP_S, SECONDS = 3.0, 5.0
MISSING = {name: peer_missing(name) for name in PEERS}


def _untrained_eegnet(tmp_path, picks: list[str], sfreq: float):
    """An EEGNet fitted for one epoch on noise: the weights do not matter, only the shapes."""
    info = DecoderInfo(("left", "right"), eeg=InputSpec(tuple(picks), sfreq, 1.0))
    windows = np.random.default_rng(0).standard_normal((20, info.eeg.n_samples, len(picks)))
    decoder = EEGNetDecoder(epochs=1, seed=0).fit(
        windows * 10, np.array(["left", "right"] * 10), info
    )
    return decoder.export(tmp_path / "eegnet.pt")


@pytest.mark.parametrize("peer", PEERS)
def test_peer_decides_every_hop_and_stops_by_itself(peer, tmp_path, unique_name):
    if MISSING[peer]:
        pytest.skip(MISSING[peer])
    protocol, _ = load_protocol("demo", [
        f"session.prefix={unique_name}", "source.eeg_channels=64", "source.eeg_srate=1000",
        "source.fnirs=false", "source.chunk_s=0.001", "preprocessing.hop_s=0.01",
        "decoder.model=",  # the demo's pretrained EEGNet is for 500 Hz
    ])  # fmt: skip
    model = _untrained_eegnet(tmp_path, list(protocol.preprocessing.picks), 1000.0)
    settings = PeerSettings.from_protocol(
        protocol, stream_names(unique_name)["eeg"], str(model), seconds=SECONDS,
        warmup_s=WARMUP_S, out=str(tmp_path / "latency.json"),
    )
    assert settings.window_s == 1.0 and settings.hop_s == 0.01
    assert settings.stream == f"{unique_name}-EEG"
    settings_path = settings.write(tmp_path / "settings.json")
    with VirtualSubjectProcess(virtual_subject_command(protocol), tmp_path / "subject.log"):
        process = start_peer(peer, settings_path, tmp_path / "peer.log")
        try:
            # it stops by itself after warm-up + measured time (start-up: imports, resolve)
            process.wait(timeout=WARMUP_S + SECONDS + 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the {peer} peer did not stop by itself")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            process.stdin.close()
    log = (tmp_path / "peer.log").read_text(errors="replace")
    assert process.returncode == 0, log
    assert (tmp_path / "latency.json").exists(), log
    with pytest.raises(ProcessLookupError):  # the graph's worker process ended with it
        os.killpg(process.pid, 0)
    result = json.loads((tmp_path / "latency.json").read_text())
    latencies = result["latency_ms"]
    # a decision every 10 ms for 5 s is 500; a loaded CI machine merges some hops
    assert len(latencies) >= 300, (len(latencies), log[-2000:])
    assert all(math.isfinite(x) and x > 0 for x in latencies)
    assert result["n_received"] >= 1000 * (WARMUP_S + SECONDS) * 0.8
    assert result["measured_to"] - result["measured_from"] == pytest.approx(SECONDS, abs=0.1)
