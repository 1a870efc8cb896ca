"""Turn a session's calibration block into a decoder: train from scratch, or fine-tune the
protocol's pretrained model; hold out trials to measure accuracy and calibrate confidence."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from bci.decode import DECODERS, Decoder, DecoderInfo, InputSpec, load_decoder, select_inputs
from bci.decode.base import take_rows
from bci.protocol import Protocol


@dataclass(frozen=True)
class FitReport:
    """What the fit did, for the session summary and the events stream."""

    kind: str
    pretrained: str | None
    """Model file fine-tuned, or None (trained on the calibration block alone)."""
    strategy: str
    """``fit``, or the fine-tuning strategy (``head``, ``full``)."""
    n_trials: int
    n_holdout_trials: int
    holdout_accuracy: float
    """Window accuracy on the held-out trials (NaN without hold-out)."""
    temperature: float
    seconds: float
    holdout: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    """Uncalibrated logits and class indices of the held-out windows (for the report)."""

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "holdout"}


def holdout_mask(labels: np.ndarray, groups: np.ndarray, fraction: float,
                 seed: int = 0) -> np.ndarray:  # fmt: skip
    """Rows of the held-out trials: ``fraction`` of each class's trials (at least one, and at
    least two left for training), chosen at random. None at all when a class has fewer than
    three trials: a temperature fitted on one class would be meaningless."""
    held = np.zeros(len(labels), dtype=bool)
    trials = {label: np.unique(groups[labels == label]) for label in np.unique(labels)}
    if fraction <= 0 or min(len(t) for t in trials.values()) < 3:
        return held
    rng = np.random.default_rng(seed)
    for label_trials in trials.values():
        n = min(max(round(fraction * len(label_trials)), 1), len(label_trials) - 2)
        held |= np.isin(groups, rng.choice(label_trials, n, replace=False))
    return held


def session_info(protocol: Protocol, eeg_sfreq: float, nirs_ch_names=(),
                 nirs_sfreq: float = 0.0) -> DecoderInfo:  # fmt: skip
    """The inputs the protocol's decoder reads in this session."""
    pre, dec = protocol.preprocessing, protocol.decoder
    inputs = DECODERS[dec.kind].inputs
    eeg = InputSpec(tuple(pre.picks), eeg_sfreq, pre.window_s) if "eeg" in inputs else None
    nirs = None
    if "nirs" in inputs:
        nirs = InputSpec(tuple(nirs_ch_names), nirs_sfreq, dec.nirs_window_s)
    return DecoderInfo(tuple(dec.classes), eeg=eeg, nirs=nirs)


def new_decoder(protocol: Protocol) -> Decoder:
    """The protocol's pretrained model (with its own alignment: ``bci check`` refuses another),
    or an unfitted decoder of its kind."""
    dec = protocol.decoder
    if dec.model is not None:
        return load_decoder(dec.model)
    return DECODERS[dec.kind](alignment=dec.alignment or "none")


def input_indices(decoder: Decoder, info: DecoderInfo) -> dict[str, np.ndarray]:
    """Column of each of a fitted decoder's channels in the session's inputs, per input
    (ValueError naming what is missing, or a rate that differs)."""
    indices = {}
    for name in decoder.info.inputs:
        spec = getattr(info, name)
        if spec is None:
            raise ValueError(f"the model reads {name}, but the session has no {name} stream.")
        indices[name] = decoder.check_compatible(spec.ch_names, spec.sfreq, name)
    return indices


def map_inputs(windows: dict[str, np.ndarray], indices: dict[str, np.ndarray]) -> dict:
    """The windows of each input with the decoder's channels in the decoder's order."""
    return {name: windows[name][..., index] for name, index in indices.items()}


def fit_decoder(protocol: Protocol, windows: dict[str, np.ndarray], labels: np.ndarray,
                groups: np.ndarray, session: DecoderInfo) -> tuple[Decoder, FitReport]:  # fmt: skip
    """Fit (or fine-tune) on the calibration windows, then calibrate on held-out trials.

    Parameters
    ----------
    windows : dict of str to array, shape (n_windows, n_samples, n_channels)
        Calibration windows of every input (``"eeg"``, and ``"nirs"`` when there is one).
    labels, groups : array, shape (n_windows,)
        Class and trial of each window.
    session : DecoderInfo
        The session's inputs, channels in stream order (:func:`session_info`). A pretrained
        model reads its own channels out of them by name.
    """
    start = time.perf_counter()
    dec = protocol.decoder
    decoder = new_decoder(protocol)
    held = holdout_mask(labels, groups, dec.holdout, protocol.session.seed)
    train = ~held
    if dec.model is not None:
        info = decoder.info
        batch = select_inputs(info, map_inputs(windows, input_indices(decoder, session)))
        decoder.fine_tune(take_rows(batch, train), labels[train], dec.fine_tune, groups[train])
        strategy = dec.fine_tune
    else:
        info = session
        batch = select_inputs(info, windows)
        decoder.fit(take_rows(batch, train), labels[train], info, groups[train])
        decoder.preprocessing = protocol.preprocessing.model_dump(mode="json")
        strategy = "fit"
    accuracy, holdout = float("nan"), None
    if held.any():
        test = take_rows(batch, held)
        logits = decoder.logits(test)
        targets = np.array([info.classes.index(label) for label in labels[held]])
        accuracy = float(np.mean(logits.argmax(axis=1) == targets))
        decoder.calibrate(test, labels[held])
        holdout = (logits, targets)
    report = FitReport(
        kind=decoder.kind,
        pretrained=None if dec.model is None else Path(dec.model).name,
        strategy=strategy,
        n_trials=len(np.unique(groups)),
        n_holdout_trials=len(np.unique(groups[held])),
        holdout_accuracy=accuracy,
        temperature=decoder.temperature,
        seconds=time.perf_counter() - start,
        holdout=holdout,
    )
    decoder.provenance.steps.append({"step": "session calibration", **report.to_json()})
    return decoder, report


def write_fit_report(path: Path, decoder: Decoder, report: FitReport) -> Path:
    """The training report PNG: reliability of the held-out probabilities before and after
    temperature scaling, and the learning curves of network decoders."""
    from bci.decode.base import softmax
    from bci.decode.report import write_decoder_report

    reliability = None
    if report.holdout is not None:
        logits, targets = report.holdout
        reliability = ((softmax(logits), targets), (softmax(logits, report.temperature), targets))
    how = f"fine-tuned {report.pretrained} ({report.strategy})" if report.pretrained else "fitted"
    return write_decoder_report(
        decoder,
        path,
        f"{report.kind} {how} on {report.n_trials} calibration trials "
        f"({report.n_holdout_trials} held out), T = {report.temperature:.2f}",
        reliability,
        {"held-out": report.holdout_accuracy if report.holdout is not None else None},
    )


class FitJob:
    """:func:`fit_decoder` on a worker thread, so the engine's loop keeps pulling, watching and
    holding the stimulator at zero while a CNN fine-tunes. Arguments as :func:`fit_decoder`;
    ``keep(decoder)``, if given, runs on the worker after the fit (saving the model: no disk
    work on the loop thread) and what it returns is :attr:`kept`."""

    def __init__(self, protocol, windows, labels, groups, session, keep=None) -> None:
        self._result = None
        self.kept = None
        self._keep = keep
        self._thread = threading.Thread(
            target=self._work, args=(protocol, windows, labels, groups, session),
            name="decoder-fit", daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _work(self, *args) -> None:
        try:
            self._result = fit_decoder(*args)
            if self._keep is not None:
                self.kept = self._keep(self._result[0])
        except BaseException as err:  # re-raised by the loop thread in result()
            self._result = err

    def done(self) -> bool:
        """Whether the fit has finished (or failed)."""
        return not self._thread.is_alive()

    def result(self):
        """``(decoder, report)`` of a finished fit; raises what the fit raised."""
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result
