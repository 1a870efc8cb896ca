"""``bci train fit`` and ``bci train evaluate``: decoders from recording files, and their
trial-level accuracy.

A trial's prediction is the class of highest mean probability over its windows. ``fit``
cross-validates on every trial (folds of whole trials, stratified), then trains on the trials
it does not hold out and fits the temperature of the probabilities on the held-out ones (an
honest accuracy and calibrated confidence from one set of files). ``evaluate`` scores a model
file on new files, or cross-validates within the files.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

import bci
from bci.decode import (
    DECODERS,
    Decoder,
    DecoderInfo,
    InputSpec,
    Provenance,
    load_decoder,
    select_inputs,
)
from bci.decode.base import take_rows
from bci.decode.report import write_decoder_report
from bci.engine.fitting import holdout_mask
from bci.protocol.schema import DecoderSection, PreprocessingSection
from bci.train.epochs import Epoching, TrialWindows, bar_disabled, trial_windows
from bci.train.files import Recording, TrainingInputError, read_recording
from bci.train.scoring import score_trials
from bci.train.settings import FNIRS_EPOCH_S, classes_of, resolve_picks, sections, with_fields

MIN_TRIALS_PER_CLASS = 5
"""Fewest trials of each class ``fit`` accepts (some to train on, one or more to hold out)."""


@dataclass(frozen=True)
class TrainRequest:
    """What the training commands take from the command line (None: the default)."""

    paths: tuple[Path, ...]
    events: dict[str, str]
    """Class label of each event code."""
    kind: str | None = None
    protocol: str | None = None
    overrides: tuple[str, ...] = ()
    picks: str | None = None
    """Comma-separated EEG channels, or ``all``."""
    tmin: float | None = None
    tmax: float | None = None
    window_s: float | None = None
    nirs_window_s: float | None = None
    pretrained: Path | None = None
    strategy: str | None = None
    """Fine-tuning strategy, ``head`` or ``full``."""
    cv_folds: int | None = None
    holdout: float | None = None
    progress: bool = True


@dataclass
class Prepared:
    """Windows and everything needed to train on them."""

    kind: str
    info: DecoderInfo
    data: TrialWindows
    preprocessing: PreprocessingSection
    decoder_section: DecoderSection
    epoch: Epoching
    recordings: list[Recording]
    make: Callable[[], Decoder]
    """A new decoder to train (unfitted, or the pretrained model afresh)."""
    train: Callable[[Decoder, object, np.ndarray, np.ndarray], None] = field(repr=False)
    """Fit (or fine-tune) a decoder from ``make`` on windows, labels, groups."""

    @property
    def batch(self):
        return select_inputs(self.info, self.data.windows)


def _load_model(path: Path, option: str) -> Decoder:
    try:
        return load_decoder(path)
    except ValueError as error:
        raise TrainingInputError(f"{option}: {error}") from error


def _model_epoch(model: Decoder) -> tuple[float, float] | None:
    for step in reversed(model.provenance.steps):
        if "epoch_s" in step:
            return tuple(step["epoch_s"])
    return None


def _new_decoder(kind: str, dec: DecoderSection) -> Decoder:
    cls = DECODERS[kind]
    return cls() if dec.alignment is None else cls(alignment=dec.alignment)


def _check_compatible(model: Decoder, ch_names, sfreq: float, name: str, where: str) -> None:
    try:
        model.check_compatible(ch_names, sfreq, name)
    except ValueError as error:
        raise TrainingInputError(
            f"{where}: {error} Its {name} channels: {list(ch_names)}."
        ) from error


def prepare(request: TrainRequest, model: Decoder | None = None) -> Prepared:
    """Read the files and cut the windows that a new decoder trains on, or that ``model`` (the
    pretrained model of ``request.pretrained``, or a model to score) is fine-tuned or scored on.
    """
    pre, dec, picks_given = sections(request.protocol, list(request.overrides))
    if model is not None:
        kind, classes = model.kind, model.info.classes
        fixed = [opt for opt, value in (("--picks", request.picks), ("--window", request.window_s),
                 ("--nirs-window", request.nirs_window_s)) if value is not None]  # fmt: skip
        if request.kind not in (None, kind) or fixed:
            raise TrainingInputError(
                f"{', '.join(fixed) or '--decoder'}: set by the model ({kind}, channels, rate and "
                "windows it was trained on); leave it out."
            )
        if model.preprocessing:
            pre = PreprocessingSection.model_validate(model.preprocessing)
        windows = {name: getattr(model.info, name).window_s for name in model.info.inputs}
        if model.info.eeg is not None:
            pre = with_fields(pre, picks=list(model.info.eeg.ch_names), window_s=windows["eeg"])
        unknown = sorted(set(request.events.values()) - set(classes))
        if unknown:
            raise TrainingInputError(
                f"--events: {unknown} are not classes of the model {list(classes)}."
            )
        default_epoch = _model_epoch(model)
    else:
        kind = request.kind or dec.kind
        if kind not in DECODERS:
            raise TrainingInputError(
                f"--decoder: {kind!r} is not available here; choose one of {sorted(DECODERS)}."
            )
        classes = classes_of(request.events)
        if set(classes) == set(dec.classes):  # the engine's column order (its controller's)
            classes = tuple(dec.classes)
        if request.window_s is not None:
            pre = with_fields(pre, window_s=request.window_s)
        windows = {"eeg": pre.window_s, "nirs": request.nirs_window_s or dec.nirs_window_s}
        default_epoch = None
    inputs = DECODERS[kind].inputs
    if default_epoch is None:
        default_epoch = (dec.epoch_tmin_s, dec.epoch_tmax_s) if "eeg" in inputs else FNIRS_EPOCH_S
    epoch = Epoching(
        default_epoch[0] if request.tmin is None else request.tmin,
        default_epoch[1] if request.tmax is None else request.tmax,
        {name: windows[name] for name in inputs},
    )
    recordings = [
        read_recording(path)
        for path in tqdm(
            request.paths, desc="reading", unit="file", disable=bar_disabled(request.progress)
        )
    ]
    if "eeg" in inputs and model is None:
        pre = resolve_picks(pre, request.picks, picks_given, recordings)
    if model is not None and "eeg" in inputs:
        for recording in recordings:  # before the long preprocessing: rate and channels
            if recording.eeg is not None:
                _check_compatible(model, recording.eeg.ch_names, recording.eeg.sfreq, "eeg",
                                  str(recording.path))  # fmt: skip
    data = trial_windows(recordings, request.events, epoch, pre, request.progress)
    specs = {
        name: InputSpec(data.ch_names[name], round(data.sfreq[name], 6), epoch.window_s[name])
        for name in inputs
    }
    info = DecoderInfo(tuple(classes), **specs)
    if model is not None:
        for name in inputs:
            _check_compatible(model, data.ch_names[name], data.sfreq[name], name, "the files")
        path, strategy = request.pretrained, request.strategy or dec.fine_tune

        def make() -> Decoder:  # a fresh copy of the pretrained model for every fold
            if path is None:
                raise RuntimeError("prepare() got a model to score, not one to fine-tune.")
            return load_decoder(path)

        def train(decoder, windows, labels, groups) -> None:
            decoder.fine_tune(windows, labels, strategy, groups=groups)
    else:

        def make() -> Decoder:
            return _new_decoder(kind, dec)

        def train(decoder, windows, labels, groups) -> None:
            decoder.fit(windows, labels, info, groups=groups)

    return Prepared(kind, info, data, pre, dec, epoch, recordings, make, train)


def check_trials(data: TrialWindows, classes: tuple[str, ...], minimum: int, purpose: str) -> None:
    """Every class needs ``minimum`` trials (TrainingInputError naming the short ones)."""
    counts = data.trials_per_class()
    short = {label: counts.get(label, 0) for label in classes if counts.get(label, 0) < minimum}
    if short:
        raise TrainingInputError(
            f"too few trials {purpose}: {short} (need {minimum} of each class; found "
            f"{counts}, {data.n_dropped} dropped at file ends or gaps). Add files or sessions."
        )


def cross_validated_proba(prep: Prepared, folds: int, progress: bool = True) -> np.ndarray:
    """Out-of-fold window probabilities, shape (n_windows, n_classes): folds of whole trials,
    stratified by class; each fold trains a decoder from ``prep.make``."""
    labels, groups, batch = prep.data.labels, prep.data.groups, prep.batch
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
    proba = np.full((len(labels), len(prep.info.classes)), np.nan)
    splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
    for train, test in tqdm(
        splits, desc="cross-validating", unit="fold", disable=bar_disabled(progress)
    ):
        decoder = prep.make()
        prep.train(decoder, take_rows(batch, train), labels[train], groups[train])
        proba[test] = decoder.predict_proba(take_rows(batch, test))
    return proba


def _files(recordings: list[Recording]) -> list[dict]:
    return [{"name": r.path.name, "sha256": r.sha256, "format": r.format} for r in recordings]


def fit_files(request: TrainRequest, model_path: Path) -> dict:
    """Train (or fine-tune ``request.pretrained``) on the files and write the model file.

    Returns
    -------
    summary : dict
        What was trained on and how well it did: ``n_trials``, ``cv_accuracy`` (trial-level,
        None with ``cv_folds`` 0), ``holdout_accuracy``, ``temperature``, ``report`` (PNG path
        or None), ...
    """
    start = time.perf_counter()
    pretrained = _load_model(request.pretrained, "--pretrained") if request.pretrained else None
    prep = prepare(request, pretrained)
    dec, data = prep.decoder_section, prep.data
    folds = dec.cv_folds if request.cv_folds is None else request.cv_folds
    check_trials(data, prep.info.classes, max(MIN_TRIALS_PER_CLASS, folds), "to fit")
    cv_accuracy = None
    if folds >= 2:
        proba = cross_validated_proba(prep, folds, request.progress)
        cv_accuracy = score_trials(proba, data, prep.info.classes)["accuracy"]
    fraction = dec.holdout if request.holdout is None else request.holdout
    if not 0 <= fraction <= 0.5:
        raise TrainingInputError(f"--holdout: got {fraction:g}; give a share from 0 to 0.5.")
    held = holdout_mask(data.labels, data.groups, fraction)
    n_held = len(np.unique(data.groups[held]))
    decoder, batch = prep.make(), prep.batch
    prep.train(decoder, take_rows(batch, ~held), data.labels[~held], data.groups[~held])
    steps = [*decoder.provenance.steps]
    steps.append({
        "step": "fine_tune" if pretrained is not None else "fit",
        "decoder": prep.kind,
        "files": _files(prep.recordings),
        "events": request.events,
        "epoch_s": [prep.epoch.tmin_s, prep.epoch.tmax_s],
        "n_trials": data.n_trials - n_held,
        "n_windows": int(np.sum(~held)),
        "cv_folds": folds if folds >= 2 else 0,
        "cv_accuracy": cv_accuracy,
    })  # fmt: skip
    if pretrained is not None:
        strategy = request.strategy or dec.fine_tune
        steps[-1] |= {"pretrained": request.pretrained.name, "strategy": strategy}
    holdout_accuracy = reliability = None
    if n_held:
        windows, labels = take_rows(batch, held), data.labels[held]
        targets = np.array([prep.info.classes.index(label) for label in labels])
        before = decoder.predict_proba(windows)
        scored = TrialWindows({}, labels, data.groups[held], {}, {}, 0)
        holdout_accuracy = score_trials(before, scored, prep.info.classes)["accuracy"]
        decoder.calibrate(windows, labels)
        reliability = ((before, targets), (decoder.predict_proba(windows), targets))
        steps.append({"step": "calibrate", "n_trials": n_held, "temperature": decoder.temperature,
                      "holdout_accuracy": holdout_accuracy})  # fmt: skip
    decoder.preprocessing = prep.preprocessing.model_dump(mode="json")
    source = "; ".join(f"{r.path.name} (sha256 {r.sha256[:12]})" for r in prep.recordings)
    if pretrained is not None:
        source += f"; fine-tuned from {request.pretrained.name} ({pretrained.provenance.source})"
    decoder.provenance = Provenance(
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        software=f"neuroloop {bci.__version__}", source=source, steps=steps,
    )  # fmt: skip
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    decoder.save(model_path)
    report = write_decoder_report(
        decoder, model_path.with_suffix(".png"),
        f"{prep.kind} · {', '.join(r.path.name for r in prep.recordings)}", reliability,
        {"cross-validated": cv_accuracy, "held-out": holdout_accuracy},
    )  # fmt: skip
    inputs = {name: asdict(getattr(prep.info, name)) for name in prep.info.inputs}
    return {
        "model": str(model_path), "decoder": prep.kind, "classes": list(prep.info.classes),
        "inputs": inputs, "n_trials": data.n_trials, "n_trials_per_class": data.trials_per_class(),
        "n_trials_dropped": data.n_dropped, "n_holdout_trials": n_held, "cv_folds": folds,
        "cv_accuracy": cv_accuracy, "holdout_accuracy": holdout_accuracy,
        "temperature": decoder.temperature, "report": str(report),
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def evaluate_files(request: TrainRequest, json_path: Path, model_path: Path | None = None) -> dict:
    """Trial-level accuracy of a model file on the files, or (``model_path`` None) of
    ``request.cv_folds``-fold cross-validation within them; written to ``json_path``."""
    if model_path is not None:
        model = _load_model(Path(model_path), "--model")
        if model.alignment_kind != "none" and model.alignment is None:
            raise TrainingInputError(
                f"--model: {Path(model_path).name} is a population model (each subject aligned "
                "to itself, none stored); fine-tune it on a subject first (bci train fit "
                "--pretrained) and evaluate that."
            )
        prep = prepare(request, model)
        proba = model.predict_proba(prep.batch)
        how = {"mode": "model", "model": str(model_path), "decoder": model.kind}
    else:
        folds = request.cv_folds
        if folds is None or folds < 2:
            raise TrainingInputError(f"--cv: got {folds}; cross-validation needs 2 or more folds.")
        pretrained = _load_model(request.pretrained, "--pretrained") if request.pretrained else None
        prep = prepare(request, pretrained)
        check_trials(prep.data, prep.info.classes, folds, f"for {folds}-fold cross-validation")
        proba = cross_validated_proba(prep, folds, request.progress)
        how = {"mode": "cross-validation", "cv_folds": folds, "decoder": prep.kind}
    result = score_trials(proba, prep.data, prep.info.classes)
    result |= how | {"files": _files(prep.recordings), "events": request.events,
                     "epoch_s": [prep.epoch.tmin_s, prep.epoch.tmax_s]}  # fmt: skip
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result
