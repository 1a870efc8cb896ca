"""The Timeflux peer: ``timeflux_eegnet.yaml`` run by Timeflux 0.17 in its own virtual environment.

Timeflux 0.17 imports ``pylsl.resolve_stream``, which pylsl 1.17 removed, so it lives in
``.venv-timeflux`` (``make peers``) with pylsl 1.16.2, loading the liblsl that this environment's
pylsl ships (``PYLSL_LIB``): one liblsl for every process of the benchmark. The graph's custom
nodes (:mod:`bci.bench.peers.timeflux_nodes`) import nothing from ``bci``.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pylsl

from bci.bench.peers import PeerSettings

ROOT = Path(__file__).resolve().parents[3]
TIMEFLUX_VENV = ROOT / ".venv-timeflux"
"""Timeflux's virtual environment, made by ``make peers``."""
GRAPH = Path(__file__).with_name("timeflux_eegnet.yaml")


def _timeflux_bin() -> Path:
    return TIMEFLUX_VENV / "bin" / "timeflux"


def _liblsl() -> Path:
    """The liblsl this environment's pylsl loaded (1.17+ wheels ship one in ``pylsl/lib``)."""
    from pylsl.lib import libpath

    return Path(libpath)


def timeflux_available() -> str | None:
    """Why the Timeflux peer cannot run here (one line saying what to do), or None if it can."""
    if not (TIMEFLUX_VENV / ".installed").exists() or not _timeflux_bin().exists():
        return f"Timeflux is not installed in {TIMEFLUX_VENV}: run `make peers`."
    if not _liblsl().exists():
        return (
            f"pylsl {pylsl.__version__} loaded no liblsl file the Timeflux peer can share "
            f"({_liblsl()}): reinstall with `make peers`."
        )
    return None


def _nominal_srate(stream: str, timeout_s: float = 10.0) -> float:
    """The nominal sampling rate of the LSL stream named ``stream``, Hz: the graph's window
    node counts in samples."""
    found = pylsl.resolve_byprop("name", stream, 1, timeout_s)
    if not found:
        raise RuntimeError(
            f"no LSL stream named {stream!r} within {timeout_s:g} s: start its source first"
        )
    return found[0].nominal_srate()


def timeflux_command(settings: PeerSettings, srate: float) -> list[str]:
    """``timeflux -e PEER_...=<JSON> timeflux_eegnet.yaml``: the settings, and the stream's
    sampling rate ``srate`` (Hz), as the environment variables the graph's template reads (JSON
    values are valid YAML)."""
    values = {
        "STREAM": settings.stream,
        "SRATE": srate,
        "MODEL": str(Path(settings.model).resolve()),
        "PICKS": list(settings.picks),
        "CAR": settings.car,
        "NOTCH_HZ": settings.notch_hz,
        "FILTER_ORDER": settings.filter_order,
        "BANDPASS_HZ": list(settings.bandpass_hz),
        "WINDOW_S": settings.window_s,
        "HOP_S": settings.hop_s,
        "SECONDS": settings.seconds,
        "WARMUP_S": settings.warmup_s,
        "OUT": str(Path(settings.out).resolve()),
        "OUTLET": f"peer-timeflux-{uuid.uuid4().hex[:6]}",
    }
    command = [str(_timeflux_bin())]
    for key, value in values.items():
        command += ["-e", f"PEER_{key}={json.dumps(value)}"]
    return [*command, str(GRAPH)]


def start_timeflux_peer(settings_path: Path, log_path: Path) -> subprocess.Popen:
    """Start the Timeflux graph on the settings in ``settings_path``; it stops by itself after
    ``warmup_s + seconds`` and writes ``out``.

    Parameters
    ----------
    settings_path : Path
        A :class:`~bci.bench.peers.PeerSettings` JSON file.
    log_path : Path
        Timeflux's console output goes here.

    Returns
    -------
    process : subprocess.Popen
        Timeflux's main process, leader of its own process group (its graph runs in a child):
        stop both with ``os.killpg(process.pid, signal.SIGTERM)``.
    """
    if missing := timeflux_available():
        raise RuntimeError(missing)
    settings = PeerSettings.read(settings_path)
    srate = _nominal_srate(settings.stream)
    env = {**os.environ, "PYLSL_LIB": str(_liblsl())}
    # Timeflux appends the graph file's folder to sys.path, which is how the graph finds
    # timeflux_nodes; this environment's PYTHONPATH is for another interpreter.
    env.pop("PYTHONPATH", None)
    with open(log_path, "w") as log:
        return subprocess.Popen(
            timeflux_command(settings, srate),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            start_new_session=True,
            env=env,
            # Timeflux reads ./.env if there is one: not the repository's
            cwd=Path(log_path).resolve().parent,
        )
