"""Custom Timeflux nodes of the Timeflux peer (``timeflux_eegnet.yaml``).

Runs inside Timeflux's own virtual environment (``make peers``), which has neither ``bci`` nor
the project's pylsl, so this module imports only Timeflux, pandas, numpy and torch. Timeflux's
own nodes do the rest of the graph: ``timeflux.nodes.lsl.Receive`` and ``Send``,
``timeflux_dsp.nodes.filters.IIRFilter`` and ``timeflux.nodes.window.Window``.

Every node follows Timeflux's port contract: ``self.i.data`` is a DataFrame indexed by sample
time (``datetime64[ns]``), or None on a cycle without data; ``self.o`` is what the next node sees.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from pylsl import local_clock
from timeflux.core.exceptions import WorkerInterrupt
from timeflux.core.node import Node
from timeflux.nodes.lsl import Send


class CommonAverage(Node):
    """Common average reference over every channel, then the decoder's channels, in its order.

    Attributes
    ----------
    i : Port
        EEG, DataFrame, shape (n_samples, n_channels), µV, one column per stream channel.
    o : Port
        DataFrame, shape (n_samples, len(picks)), µV; its meta adds ``n_received``, the samples
        received so far.

    Parameters
    ----------
    picks : list of str
        Channels the decoder reads, in its order; each must be a column of the input.
    car : bool
        Subtract the mean over all channels first (before picking).
    """

    def __init__(self, picks: list[str], car: bool = True) -> None:
        if not picks:
            raise ValueError(f"picks must name at least one channel, got {picks!r}")
        self._picks = list(picks)
        self._car = bool(car)
        self._columns: pd.Index | None = None
        self._rows: np.ndarray | None = None
        self._n_received = 0

    def update(self) -> None:
        if not self.i.ready():
            return
        data = self.i.data
        if self._columns is None or not data.columns.equals(self._columns):
            missing = [name for name in self._picks if name not in data.columns]
            if missing:
                raise ValueError(
                    f"picks {missing} are not channels of the stream ({list(data.columns)})"
                )
            self._columns = data.columns
            self._rows = data.columns.get_indexer(self._picks)
        # numpy, not DataFrame arithmetic: a 1 ms chunk is a few rows, where pandas' per-call
        # overhead would be most of the cost of the node
        values = data.to_numpy(dtype=np.float64)
        if self._car:
            values = values - values.mean(axis=1, keepdims=True)
        self.o.data = pd.DataFrame(values[:, self._rows], index=data.index, columns=self._picks)
        # the count rides on the meta (a new dict: Receive reuses its own): a second edge from
        # Receive would make Timeflux deep-copy every chunk for it
        self._n_received += len(data)
        self.o.meta = {**self.i.meta, "n_received": self._n_received}


class TorchScriptClassifier(Node):
    """Class probabilities of each window from a TorchScript model.

    Attributes
    ----------
    i : Port
        The newest window, DataFrame, shape (n_samples, n_channels), µV.
    o : Port
        One row (the window's newest sample time): the softmax of the model's logits, one column
        per class.

    Parameters
    ----------
    model : str
        TorchScript file: float32 windows (batch, n_samples, n_channels), µV → logits
        (batch, n_classes).
    classes : list of str
        Column names of the output, in the model's logit order.
    threads : int
        Intra-op threads for torch; 1, because a batch of one window gains nothing from more and
        the graph shares the CPU with the stream source.
    """

    def __init__(self, model: str, classes: list[str], threads: int = 1) -> None:
        torch.set_num_threads(int(threads))
        self._model = torch.jit.load(model).eval()
        self._classes = list(classes)

    def update(self) -> None:
        if not self.i.ready():
            return
        window = self.i.data
        x = torch.from_numpy(window.to_numpy(dtype=np.float32, copy=True))[None]
        with torch.inference_mode():
            probabilities = torch.softmax(self._model(x), dim=1).numpy()
        if probabilities.shape != (1, len(self._classes)):
            raise ValueError(
                f"the model gave probabilities of shape {probabilities.shape}; classes "
                f"{self._classes} need (1, {len(self._classes)})"
            )
        self.o.data = pd.DataFrame(probabilities, index=window.index[-1:], columns=self._classes)
        self.o.meta = self.i.meta


class TimedSend(Send):
    """Timeflux's LSL ``Send``, then the latency of each decision it pushed; stops the graph.

    The latency of a decision is ``pylsl.local_clock()`` right after the push, minus the LSL
    time stamp of the newest sample the decision was computed from (the row's index). After
    ``warmup_s + seconds`` (from the graph's start) it writes ``out`` as JSON,
    ``{"latency_ms": [...], "n_received": int, "measured_from": s, "measured_to": s}``, and
    raises ``WorkerInterrupt``, which is how a Timeflux node ends its graph (as
    ``timeflux.nodes.hdf5.Replay`` does at the end of a file).

    Attributes
    ----------
    i : Port
        Decisions, DataFrame indexed by the newest sample's LSL time stamp as a datetime
        (``Receive`` with ``clocksync: false`` adds no offset to it). Its meta's ``n_received``
        (from ``CommonAverage``) counts the samples received up to that decision.

    Parameters
    ----------
    name : str
        Name of the outlet.
    out : str
        JSON file to write.
    seconds : float
        Measured time after the warm-up, s.
    warmup_s : float
        Time to connect and fill the first window before measuring, s.
    **kwargs
        The other parameters of ``timeflux.nodes.lsl.Send`` (``type``, ``format``, ...).
    """

    def __init__(self, name: str, out: str, seconds: float, warmup_s: float, **kwargs) -> None:
        super().__init__(name, **kwargs)
        if not seconds > 0 or not warmup_s >= 0:
            raise ValueError(f"need seconds > 0 and warmup_s >= 0, got {seconds}, {warmup_s}")
        self._out = out
        start = local_clock()
        self._measure_from = start + warmup_s
        self._stop_at = start + warmup_s + seconds
        self._latencies_ms: list[float] = []
        self._n_received = 0

    def update(self) -> None:
        if self.i.ready():
            self._n_received = self.i.meta.get("n_received", self._n_received)
        super().update()
        now = local_clock()
        if self.i.ready() and now >= self._measure_from:
            newest = self.i.data.index[-1:].as_unit("ns").asi8[0] / 1e9
            self._latencies_ms.append((now - newest) * 1e3)
        if now >= self._stop_at:
            with open(self._out, "w") as f:
                json.dump(
                    {
                        "latency_ms": self._latencies_ms,
                        "n_received": self._n_received,
                        "measured_from": self._measure_from,
                        "measured_to": now,
                    },
                    f,
                )
            raise WorkerInterrupt(f"measured {len(self._latencies_ms)} decisions")
