"""The decoder interface every decoder family implements, and the model file they share.

A decoder reads fixed-length windows of one or two preprocessed inputs (``"eeg"``, ``"nirs"``)
and returns calibrated class probabilities. The base class owns what every family needs the same
way: label checks, per-subject alignment of EEG windows, temperature scaling, grouped
cross-validation, the compatibility check against a stream, and the model file. A family
implements four hooks: ``_fit``, ``_logits``, ``_arrays`` and ``_restore`` (and, if it can do
better than refitting, ``_fine_tune``).

Windows
-------
A single-input decoder takes an array of shape (n_windows, n_samples, n_channels); a decoder of
several inputs (``inputs`` longer than one) takes a dict of such arrays keyed by input name.
:func:`select_inputs` builds the right one from a dict of every input.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.model_selection import StratifiedGroupKFold

from bci.decode.alignment import Alignment

MODEL_FORMAT = "neuroloop-model"
MODEL_VERSION = 1
INPUTS = ("eeg", "nirs")
"""Input names a decoder may read."""


@dataclass(frozen=True)
class InputSpec:
    """One input a decoder reads: which channels, at what rate, over what window."""

    ch_names: tuple[str, ...]
    """Channels, in the order the decoder reads them."""
    sfreq: float
    """Sampling rate, Hz."""
    window_s: float
    """Window length, s."""

    @property
    def n_samples(self) -> int:
        """Window length, samples."""
        return round(self.window_s * self.sfreq)


@dataclass(frozen=True)
class DecoderInfo:
    """What a decoder was trained on; a stream that differs is refused."""

    classes: tuple[str, ...]
    """Class labels in probability-column order."""
    eeg: InputSpec | None = None
    """The preprocessed EEG input, if the decoder reads one."""
    nirs: InputSpec | None = None
    """The HbO/HbR input, if the decoder reads one."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the inputs the decoder reads, in :data:`INPUTS` order."""
        return tuple(name for name in INPUTS if getattr(self, name) is not None)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> DecoderInfo:
        specs = {
            name: InputSpec(tuple(spec["ch_names"]), spec["sfreq"], spec["window_s"])
            for name in INPUTS
            if (spec := data.get(name)) is not None
        }
        return cls(tuple(data["classes"]), **specs)


Windows = np.ndarray | dict[str, np.ndarray]


def select_inputs(info: DecoderInfo, windows: dict[str, np.ndarray]) -> Windows:
    """The argument a decoder bound to ``info`` takes, from windows of every input by name."""
    if len(info.inputs) == 1:
        return windows[info.inputs[0]]
    return {name: windows[name] for name in info.inputs}


def labels_to_targets(labels, classes: tuple[str, ...]) -> np.ndarray:
    """Class indices of string labels (ValueError for a label outside ``classes``)."""
    labels = np.asarray(labels)
    unknown = sorted(set(labels.tolist()) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}.")
    if len(set(labels.tolist())) < 2:
        raise ValueError("training needs windows of at least two classes.")
    return np.array([classes.index(label) for label in labels], dtype=np.int64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    proba = np.exp(scaled)
    return proba / proba.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """Temperature minimizing the negative log-likelihood of held-out ``targets`` (Guo et al.
    2017, "On calibration of modern neural networks"), searched over 0.05–20."""

    def nll(log_t: float) -> float:
        proba = softmax(logits, np.exp(log_t))
        return -float(np.mean(np.log(np.maximum(proba[np.arange(len(targets)), targets], 1e-12))))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


@dataclass
class Provenance:
    """Where a model came from, stored in its file."""

    created: str = ""
    """UTC time of training, ISO 8601."""
    software: str = ""
    """NeuroLoop version that trained it."""
    source: str = ""
    """What it was trained on (virtual subject seeds, files, a session)."""
    steps: list[dict] = field(default_factory=list)
    """Each training step (pretrain, fine-tune, calibration) with its figures."""


class Decoder(ABC):
    """A classifier of windows: fit on labeled windows, then calibrated class probabilities.

    Parameters
    ----------
    alignment : {"none", "euclidean", "riemann"}
        Per-subject re-centering of EEG windows before the classifier: Euclidean alignment (He &
        Wu 2019) or Riemannian re-centering (Zanini et al. 2018). ``fit`` with ``subjects``
        aligns each subject to itself; ``fine_tune`` and a single-subject ``fit`` store the new
        subject's reference, which ``predict_proba`` then applies.
    """

    kind: ClassVar[str]
    """Registry name (the protocol's ``decoder.kind``)."""
    inputs: ClassVar[tuple[str, ...]] = ("eeg",)
    """Inputs the family reads."""

    def __init__(self, alignment: str = "none") -> None:
        if alignment not in ("none", *Alignment.KINDS):
            raise ValueError(
                f"alignment must be 'none', 'euclidean' or 'riemann', got {alignment!r}."
            )
        self.alignment_kind = alignment
        self.alignment: Alignment | None = None
        self.info: DecoderInfo | None = None
        self.temperature = 1.0
        self.preprocessing: dict = {}
        """The preprocessing the training windows went through (protocol section as JSON)."""
        self.provenance = Provenance()

    # hooks ---------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON); ``type(self)(**config())`` is an unfitted twin."""
        return {"alignment": self.alignment_kind}

    @abstractmethod
    def _fit(self, windows: Windows, targets: np.ndarray, info: DecoderInfo,
             groups: np.ndarray | None) -> None:  # fmt: skip
        """Train the classifier on aligned windows; ``groups`` (trial of each window) may
        guide early stopping."""

    def _fine_tune(self, windows: Windows, targets: np.ndarray, strategy: str,
                   groups: np.ndarray | None) -> None:  # fmt: skip
        """Adapt to a new subject's aligned windows. Families without a cheaper path refit."""
        self._fit(windows, targets, self.info, groups)

    @abstractmethod
    def _logits(self, windows: Windows) -> np.ndarray:
        """Unnormalized log-probabilities, shape (n_windows, n_classes), of aligned windows."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (saved bit-exactly)."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted state from ``_arrays()``'s output; ``info`` is already set."""

    # alignment -----------------------------------------------------------------------------
    def _align(self, windows: Windows, subjects: np.ndarray | None = None,
               store: bool = False) -> Windows:  # fmt: skip
        """Align the EEG input: per subject when ``subjects`` is given, else with the stored
        reference (refit first when ``store``)."""
        if self.alignment_kind == "none" or "eeg" not in self.inputs:
            return windows
        eeg = windows["eeg"] if isinstance(windows, dict) else windows
        if subjects is not None:
            aligned = np.empty_like(eeg)
            for subject in np.unique(subjects):
                rows = subjects == subject
                aligned[rows] = Alignment.fit(eeg[rows], self.alignment_kind).apply(eeg[rows])
        else:
            if store:
                self.alignment = Alignment.fit(eeg, self.alignment_kind)
            aligned = eeg if self.alignment is None else self.alignment.apply(eeg)
        return {**windows, "eeg": aligned} if isinstance(windows, dict) else aligned

    # public --------------------------------------------------------------------------------
    def fit(self, windows: Windows, labels, info: DecoderInfo, groups=None,
            subjects=None) -> Decoder:  # fmt: skip
        """Train.

        Parameters
        ----------
        windows : array, shape (n_windows, n_samples, n_channels), or dict of such arrays
            Preprocessed windows (EEG µV; fNIRS HbO/HbR mol/L, as MNE and the Beer–Lambert stage).
        labels : array of str, shape (n_windows,)
            Class of each window; each must be in ``info.classes``.
        info : DecoderInfo
            Inputs and classes the decoder is bound to.
        groups : array of int, shape (n_windows,), optional
            Trial of each window (keeps trials whole in validation splits).
        subjects : array, shape (n_windows,), optional
            Subject of each window: a population fit, each subject aligned to itself.
        """
        if tuple(info.inputs) != tuple(self.inputs):
            raise ValueError(
                f"a {self.kind} decoder reads {list(self.inputs)}, but info describes "
                f"{list(info.inputs)}."
            )
        targets = labels_to_targets(labels, info.classes)
        self.info = info
        self.temperature = 1.0
        self.alignment = None  # a population fit has no one subject's reference
        aligned = self._align(windows, subjects, store=subjects is None)
        self._fit(aligned, targets, info, groups)
        return self

    def fine_tune(self, windows: Windows, labels, strategy: str = "full", groups=None) -> Decoder:
        """Adapt a fitted (pretrained) decoder to a new subject's calibration windows.

        Parameters
        ----------
        strategy : {"head", "full"}
            ``head`` retrains only the classifier layer; ``full`` every weight with a small
            learning rate and early stopping. Classical families refit either way.
        """
        self._check_fitted("fine_tune()")
        if strategy not in ("head", "full"):
            raise ValueError(f"strategy must be 'head' or 'full', got {strategy!r}.")
        targets = labels_to_targets(labels, self.info.classes)
        self.temperature = 1.0
        self._fine_tune(self._align(windows, store=True), targets, strategy, groups)
        return self

    def logits(self, windows: Windows) -> np.ndarray:
        """Uncalibrated log-probabilities, shape (n_windows, n_classes)."""
        self._check_fitted("logits()")
        return self._logits(self._align(windows))

    def predict_proba(self, windows: Windows) -> np.ndarray:
        """Class probabilities, shape (n_windows, n_classes), rows sum to 1, columns in
        ``info.classes`` order, temperature-scaled."""
        return softmax(self.logits(windows), self.temperature)

    def calibrate(self, windows: Windows, labels) -> float:
        """Fit the temperature on held-out windows (not used for training); returns it."""
        self._check_fitted("calibrate()")
        targets = labels_to_targets(labels, self.info.classes)
        self.temperature = fit_temperature(self.logits(windows), targets)
        return self.temperature

    def cross_validate(self, windows: Windows, labels, groups, info: DecoderInfo,
                       folds: int = 5) -> float:  # fmt: skip
        """Mean accuracy of grouped, stratified cross-validation of an unfitted twin (a trial's
        windows stay in one fold)."""
        labels, groups = np.asarray(labels), np.asarray(groups)
        n_trials = len(set(groups.tolist()))
        cv = StratifiedGroupKFold(n_splits=min(folds, n_trials // 2), shuffle=True, random_state=0)
        scores = []
        for train, test in cv.split(np.zeros(len(labels)), labels, groups):
            twin = type(self)(**self.config())
            twin.fit(take_rows(windows, train), labels[train], info, groups[train])
            predicted = np.asarray(info.classes)[twin.logits(take_rows(windows, test)).argmax(1)]
            scores.append(np.mean(predicted == labels[test]))
        return float(np.mean(scores))

    def check_compatible(self, ch_names, sfreq: float, input: str = "eeg") -> np.ndarray:
        """Map a stream onto the decoder's channels, or refuse it.

        Returns
        -------
        index : array of int, shape (n_decoder_channels,)
            Column of each decoder channel in the stream (a superset is mapped by name).

        Raises
        ------
        ValueError
            A channel is missing, or the rate differs; the message says which and what to do.
        """
        self._check_fitted("check_compatible()")
        spec = getattr(self.info, input)
        if spec is None:
            raise ValueError(f"the {self.kind} decoder reads no {input} input.")
        ch_names = list(ch_names)
        missing = [name for name in spec.ch_names if name not in ch_names]
        if missing:
            raise ValueError(
                f"The {input} stream lacks channels {missing} that the decoder was trained on; "
                "pick a stream that has them, rename them in the source, or retrain on this "
                "montage."
            )
        if abs(sfreq - spec.sfreq) > 1e-6:
            raise ValueError(
                f"The {input} stream runs at {sfreq:g} Hz but the decoder was trained at "
                f"{spec.sfreq:g} Hz; resample the source or retrain."
            )
        return np.array([ch_names.index(name) for name in spec.ch_names])

    # model file ----------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Everything needed to rebuild the fitted decoder: JSON metadata and named arrays."""
        self._check_fitted("save()")
        meta = {
            "kind": self.kind,
            "config": self.config(),
            "info": self.info.to_json(),
            "preprocessing": self.preprocessing,
            "alignment": self.alignment_kind,
            "temperature": self.temperature,
            "provenance": asdict(self.provenance),
        }
        arrays = dict(self._arrays())
        if self.alignment is not None:
            arrays["__alignment__"] = self.alignment.matrix
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Decoder:
        """Rebuild a decoder from :meth:`state`'s output."""
        decoder = cls(**meta["config"])
        decoder.info = DecoderInfo.from_json(meta["info"])
        decoder.preprocessing = meta.get("preprocessing", {})
        decoder.temperature = float(meta.get("temperature", 1.0))
        decoder.provenance = Provenance(**meta.get("provenance", {}))
        if "__alignment__" in arrays:
            decoder.alignment = Alignment(meta["alignment"], arrays.pop("__alignment__"))
        decoder._restore(arrays)
        return decoder

    def save(self, path) -> Path:
        """Write the model file (a NumPy ``.npz``: arrays plus a JSON header; no pickle)."""
        meta, arrays = self.state()
        header = {"format": MODEL_FORMAT, "version": MODEL_VERSION, **meta}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            np.savez(file, __meta__=np.array(json.dumps(header)), **arrays)
        return path

    def _check_fitted(self, call: str) -> None:
        if self.info is None:
            raise RuntimeError(
                f"The decoder is not fitted; call fit() or load a model before {call}."
            )


def check_windows(windows, n_channels: int, kind: str) -> np.ndarray:
    """``windows`` as a float array of shape (n_windows, n_samples, n_channels), or ValueError."""
    windows = np.asarray(windows)
    if windows.ndim != 3 or windows.shape[2] != n_channels:
        raise ValueError(
            f"{kind} windows must have shape (n_windows, n_samples, {n_channels}), "
            f"got {windows.shape}."
        )
    return windows


def take_rows(windows: Windows, rows: np.ndarray) -> Windows:
    """The windows at ``rows`` of a single-input array or of each input of a dict."""
    if isinstance(windows, dict):
        return {name: value[rows] for name, value in windows.items()}
    return windows[rows]


def read_model_file(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a model file (ValueError if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist; train one with `bci train`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        header = json.loads(str(arrays.pop("__meta__")))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path} is not a NeuroLoop model file ({error}); train one with `bci train`."
        ) from error
    if header.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a NeuroLoop model file; train one with `bci train`.")
    if header.get("version", 0) > MODEL_VERSION:
        raise ValueError(
            f"{path} is model format {header['version']}, newer than this NeuroLoop reads "
            f"({MODEL_VERSION}); update NeuroLoop."
        )
    return header, arrays
