"""The EEGNet loop built the way labs build it today, for ``bci bench latency --peers``.

Each peer runs in its own process against the virtual subject's EEG stream, with the TorchScript
export of the model NeuroLoop's own ``cnn`` run fitted (same weights) and the same preprocessing
(common average over every EEG channel → picks → 50 Hz notch → causal Butterworth band-pass), and
decides every ``hop_s`` from the newest ``window_s`` of samples. After ``warmup_s`` it records, for
every decision, the time from the newest sample's LSL timestamp (clock-corrected) to the moment the
decision is out of the peer (``pylsl.local_clock()``), and writes them to ``out`` as JSON:
``{"latency_ms": [...], "n_received": int, "measured_from": s, "measured_to": s}`` (LSL clock:
the harness reads the peer's CPU over that span).

The settings reach a peer as one JSON file (:meth:`PeerSettings.write`); a peer reads it with
:meth:`PeerSettings.read`, or, where it cannot import ``bci`` (Timeflux runs in its own
virtual environment), with ``json.load``: every field is a plain JSON value.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class PeerSettings:
    stream: str
    """Name of the EEG stream (64 ch · 1 kHz from the virtual subject)."""
    model: str
    """TorchScript file: float32 windows (batch, n_samples, n_picks), µV → logits (batch, 2)."""
    picks: list[str]
    """Channels the model reads, in its order."""
    car: bool = True
    notch_hz: float | None = 50.0
    bandpass_hz: tuple[float, float] = (8.0, 30.0)
    filter_order: int = 4
    window_s: float = 1.0
    hop_s: float = 0.01
    seconds: float = 60.0
    """Measured time after the warm-up, s."""
    warmup_s: float = 5.0
    """Time to connect and fill the first window before measuring, s."""
    out: str = ""
    """JSON file the peer writes its latencies to."""

    @classmethod
    def from_protocol(cls, protocol, stream: str, model: str, **timing) -> PeerSettings:
        """The protocol's preprocessing, window and hop for ``stream`` and ``model``; ``timing``:
        ``seconds``, ``warmup_s``, ``out``."""
        pre = protocol.preprocessing
        return cls(stream=stream, model=model, picks=list(pre.picks), car=pre.car,
                   notch_hz=pre.notch_hz, bandpass_hz=tuple(pre.bandpass_hz),
                   filter_order=pre.filter_order, window_s=pre.window_s, hop_s=pre.hop_s,
                   **timing)  # fmt: skip

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> PeerSettings:
        return cls(**json.loads(Path(path).read_text()))


def peer_missing(name: str) -> str | None:
    """Why peer ``name`` (``timeflux``, ``mnelsl``) cannot run here, in one line saying what to
    install, or None."""
    if name == "timeflux":
        from bci.bench.peers.timeflux_peer import timeflux_available

        return timeflux_available()
    if importlib.util.find_spec("mne_lsl") is None:
        return "MNE-LSL is not installed: run `make peers`."
    return None
