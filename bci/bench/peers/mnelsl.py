"""The MNE-LSL peer: a ``StreamLSL`` polling loop as in MNE-LSL's tutorials.

``python -m bci.bench.peers.mnelsl SETTINGS.json`` (see :mod:`bci.bench.peers`). MNE-LSL's
acquisition thread pulls the inlet every ``acquisition_delay`` (its default, 1 ms), re-references
and filters each chunk causally (``set_eeg_reference``, ``notch_filter``, ``filter``) into a ring
buffer; the main loop waits for ``hop_s`` of new samples, reads the newest window with
``get_data``, runs the model and pushes the probabilities to an outlet (``mne_lsl.lsl``).
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import numpy as np
import torch
from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock
from mne_lsl.stream import StreamLSL

from bci.bench.peers import PeerSettings

_POLL_S = 0.0005
"""Sleep between looks at ``n_new_samples``: well under a hop, and it leaves the acquisition
thread the GIL."""


def run(settings: PeerSettings) -> dict:
    torch.set_num_threads(1)
    model = torch.jit.load(settings.model).eval()
    stream = StreamLSL(bufsize=2 * settings.window_s, name=settings.stream)
    stream.connect(timeout=10)
    if settings.car:
        stream.set_eeg_reference("average")
    if settings.notch_hz:
        stream.notch_filter(settings.notch_hz, picks=settings.picks)
    low, high = settings.bandpass_hz
    stream.filter(low, high, picks=settings.picks,
                  iir_params={"order": settings.filter_order, "ftype": "butter",
                              "output": "sos"})  # fmt: skip
    outlet = StreamOutlet(StreamInfo(f"peer-mnelsl-{uuid.uuid4().hex[:6]}", "Markers", 2, 0,
                                     "float32", uuid.uuid4().hex))  # fmt: skip
    hop = round(settings.hop_s * stream.info["sfreq"])
    latencies: list[float] = []
    start = local_clock()
    measure_from, stop_at = start + settings.warmup_s, start + settings.warmup_s + settings.seconds
    received = 0
    with torch.inference_mode():
        while True:
            new = stream.n_new_samples
            if new < hop:
                time.sleep(_POLL_S)
                continue
            received += new
            data, ts = stream.get_data(settings.window_s, picks=settings.picks)
            # the buffer keeps the stream's unit (µV, as the model reads), channels first
            x = torch.from_numpy(np.ascontiguousarray(data.T, dtype=np.float32))[None]
            probabilities = torch.softmax(model(x), dim=1)[0].numpy()
            outlet.push_sample(probabilities)
            now = local_clock()
            if now >= stop_at:
                break
            if now >= measure_from:
                latencies.append((now - ts[-1]) * 1e3)
    stream.disconnect()
    return {
        "latency_ms": latencies,
        "n_received": received,
        "measured_from": measure_from,
        "measured_to": now,
    }


def main(argv: list[str]) -> None:
    settings = PeerSettings.read(argv[0])
    result = run(settings)
    with open(settings.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
