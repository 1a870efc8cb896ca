"""Hybrid EEG + fNIRS decoder: late fusion of two decoders' log-probabilities.

The fused logits are ``w_eeg · log p_eeg + w_nirs · log p_nirs``, a weighted product of experts: a
meta-classifier of the two classifiers' outputs, as in Fazli et al. 2012 ("Enhanced performance by
a hybrid NIRS–EEG brain computer interface", NeuroImage 59(1)), with two weights. The weights are
fitted by maximum likelihood on out-of-fold predictions of the calibration data (folds keep trials
whole). A single modality is kept unless fusing earns its extra weight: the fused likelihood must
beat the better single modality by a likelihood-ratio test (χ²(1), 5 %).

Alignment
---------
The hybrid owns the alignment of the EEG input (the base class applies it to the ``"eeg"``
entry); its EEG part always runs with ``alignment="none"``, so windows are aligned once. An EEG
decoder or ``eeg_config`` that asks for an alignment hands that kind over to the hybrid.
"""

from __future__ import annotations

import json

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedGroupKFold

from bci.decode.base import Decoder, DecoderInfo
from bci.decode.fnirs import FnirsDecoder

WEIGHT_MAX = 100.0
"""Upper bound of each modality weight (a weight is also an inverse temperature)."""
_LRT_NLL = 1.92  # half the 95 % quantile of χ²(1): the NLL drop a second weight must earn


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, shape (n_windows, n_classes)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def fusion_weights(eeg_logp: np.ndarray, nirs_logp: np.ndarray,
                   targets: np.ndarray) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Modality weights from held-out log-probabilities.

    Parameters
    ----------
    eeg_logp, nirs_logp : array, shape (n_windows, n_classes)
        Out-of-fold log-probabilities of each modality.
    targets : array of int, shape (n_windows,)
        True class indices.

    Returns
    -------
    weights : array, shape (2,)
        ``(w_eeg, w_nirs)``, each in [0, :data:`WEIGHT_MAX`]; one is 0 unless fusion helps.
    summary : dict
        ``choice`` ("eeg", "nirs" or "fused"), and the out-of-fold ``accuracy`` and mean
        negative log-likelihood ``nll`` of each candidate.
    """
    stack = np.stack([eeg_logp, nirs_logp])  # (2, n_windows, n_classes)
    rows = np.arange(len(targets))

    def nll(weights: np.ndarray) -> tuple[float, np.ndarray]:
        logp = log_softmax(np.tensordot(weights, stack, axes=1))
        residual = np.exp(logp)
        residual[rows, targets] -= 1.0
        gradient = np.einsum("nc,knc->k", residual, stack)
        return -float(logp[rows, targets].sum()), gradient

    candidates = {}
    for name, start, bounds in (
        ("eeg", [1.0, 0.0], [(0.0, WEIGHT_MAX), (0.0, 0.0)]),
        ("nirs", [0.0, 1.0], [(0.0, 0.0), (0.0, WEIGHT_MAX)]),
        ("fused", [1.0, 1.0], [(0.0, WEIGHT_MAX), (0.0, WEIGHT_MAX)]),
    ):
        result = minimize(nll, np.array(start), jac=True, method="L-BFGS-B", bounds=bounds)
        # a single modality's decisions do not depend on its weight
        decisions = np.tensordot(result.x if name == "fused" else start, stack, axes=1)
        accuracy = float(np.mean(decisions.argmax(axis=1) == targets))
        candidates[name] = (result.x, float(result.fun), accuracy)
    single = "eeg" if candidates["eeg"][1] <= candidates["nirs"][1] else "nirs"
    choice = "fused" if candidates[single][1] - candidates["fused"][1] > _LRT_NLL else single
    summary = {
        "choice": choice,
        "accuracy": {name: value[2] for name, value in candidates.items()},
        "nll": {name: value[1] / len(targets) for name, value in candidates.items()},
    }
    return candidates[choice][0].copy(), summary


class HybridDecoder(Decoder):
    """An EEG decoder and an :class:`~bci.decode.fnirs.FnirsDecoder`, fused late.

    Parameters
    ----------
    eeg_kind : str
        Registered EEG decoder family (``bci.decode.DECODERS``).
    eeg_config : dict, optional
        Its constructor arguments.
    nirs_config : dict, optional
        The fNIRS decoder's constructor arguments.
    eeg : Decoder, optional
        An EEG decoder to use instead of ``eeg_kind``/``eeg_config``. If it is fitted
        (pretrained), :meth:`fit` starts every EEG fit from it and fine-tunes it with
        ``eeg_strategy`` instead of training from scratch. Not part of :meth:`config`: an
        unfitted twin trains its EEG part from scratch.
    eeg_strategy : {"head", "full"}
        How :meth:`fit` fine-tunes a pretrained EEG part.
    folds : int
        Cross-validation folds for the out-of-fold predictions the weights are fitted on. With
        fewer than two trials of some class the EEG part is used alone.
    alignment : {"none", "euclidean", "riemann"}, optional
        Alignment of the EEG input, applied by the hybrid (see the module notes); by default
        the EEG decoder's own.
    """

    kind = "hybrid"
    inputs = ("eeg", "nirs")

    def __init__(self, eeg_kind: str = "riemann", eeg_config: dict | None = None,
                 nirs_config: dict | None = None, *, eeg: Decoder | None = None,
                 eeg_strategy: str = "full", folds: int = 5,
                 alignment: str | None = None) -> None:  # fmt: skip
        if eeg is not None:
            if eeg_config is not None:
                raise ValueError("give either eeg or eeg_config, not both.")
            if tuple(eeg.inputs) != ("eeg",):
                raise ValueError(f"eeg must be a decoder of EEG alone, got a {eeg.kind} decoder.")
            eeg_kind, eeg_config = eeg.kind, eeg.config()
        eeg_config = dict(eeg_config or {})
        own = eeg_config.pop("alignment", "none")
        if alignment is None:
            alignment = own
        elif own not in ("none", alignment):
            raise ValueError(
                f"the EEG decoder asks for {own!r} alignment but the hybrid for {alignment!r}; "
                "give the alignment to the hybrid only."
            )
        super().__init__(alignment)
        if eeg_strategy not in ("head", "full"):
            raise ValueError(f"eeg_strategy must be 'head' or 'full', got {eeg_strategy!r}.")
        if not isinstance(folds, int) or folds < 2:
            raise ValueError(f"folds must be an integer ≥ 2, got {folds!r}.")
        self.eeg_kind = eeg_kind
        self.eeg_config = {**eeg_config, "alignment": "none"}
        self.nirs_config = dict(nirs_config or {})
        self.eeg_strategy = eeg_strategy
        self.folds = folds
        self.weights = np.array([1.0, 0.0])
        """``(w_eeg, w_nirs)`` of the fused log-probabilities."""
        self.fusion: dict = {}
        """How the weights were chosen: :func:`fusion_weights`' summary and ``folds``."""
        self._nirs = FnirsDecoder(**self.nirs_config)
        self._eeg_start: tuple[dict, dict] | None = None
        if eeg is None:
            self._eeg = _eeg_class(eeg_kind)(**self.eeg_config)
        elif eeg.info is None:
            self._eeg = type(eeg)(**self.eeg_config)
        else:
            meta, arrays = eeg.state()
            arrays.pop("__alignment__", None)  # the hybrid refits the subject's reference
            self._eeg_start = ({**meta, "config": self.eeg_config, "temperature": 1.0}, arrays)
            self._eeg = type(eeg).from_state(self._eeg_start[0], dict(arrays))

    @classmethod
    def from_parts(cls, eeg: Decoder, nirs: FnirsDecoder | None = None, **kwargs) -> HybridDecoder:
        """A hybrid of an EEG decoder (fitted: pretrained) and an fNIRS decoder's settings."""
        if nirs is not None and not isinstance(nirs, FnirsDecoder):
            raise TypeError(f"nirs must be an FnirsDecoder, got {type(nirs).__name__}.")
        return cls(eeg=eeg, nirs_config=None if nirs is None else nirs.config(), **kwargs)

    @property
    def eeg(self) -> Decoder:
        """The EEG part."""
        return self._eeg

    @property
    def nirs(self) -> FnirsDecoder:
        """The fNIRS part."""
        return self._nirs

    def config(self):
        return {
            **super().config(),
            "eeg_kind": self.eeg_kind,
            "eeg_config": self.eeg_config,
            "nirs_config": self.nirs_config,
            "eeg_strategy": self.eeg_strategy,
            "folds": self.folds,
        }

    # training ------------------------------------------------------------------------------
    def _fit(self, windows, targets, info, groups):
        if self._eeg_start is not None:
            pretrained = DecoderInfo.from_json(self._eeg_start[0]["info"])
            if pretrained.classes != info.classes or pretrained.eeg != info.eeg:
                raise ValueError(
                    f"the pretrained EEG decoder reads {pretrained.eeg} for classes "
                    f"{list(pretrained.classes)}, but info asks for {info.eeg} and "
                    f"{list(info.classes)}; give info that matches the pretrained model."
                )
        self._train(windows, targets, groups, self._eeg_start, self.eeg_strategy)

    def _fine_tune(self, windows, targets, strategy, groups):
        self._train(windows, targets, groups, self._eeg.state(), strategy)

    def _train(self, windows, targets, groups, start, strategy) -> None:
        eeg, nirs = self._split(windows)
        labels = np.asarray(self.info.classes)[targets]
        groups = np.arange(len(targets)) if groups is None else np.asarray(groups)
        per_class = min(len(np.unique(groups[targets == c])) for c in np.unique(targets))
        n_folds = min(self.folds, per_class)
        if n_folds >= 2:
            logp = np.zeros((2, len(targets), len(self.info.classes)))
            cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=0)
            for train, test in cv.split(np.zeros(len(targets)), targets, groups):
                parts = self._train_parts(eeg[train], nirs[train], labels[train], groups[train],
                                          start, strategy)  # fmt: skip
                logp[0, test] = log_softmax(parts[0].logits(eeg[test]))
                logp[1, test] = log_softmax(parts[1].logits(nirs[test]))
            self.weights, summary = fusion_weights(logp[0], logp[1], targets)
        else:  # too few trials to hold any out: the EEG part alone, unscaled
            self.weights, summary = np.array([1.0, 0.0]), {"choice": "eeg"}
        self.fusion = {**summary, "folds": n_folds if n_folds >= 2 else 0}
        self._eeg, self._nirs = self._train_parts(eeg, nirs, labels, groups, start, strategy)

    def _train_parts(self, eeg, nirs, labels, groups, start, strategy):
        classes = self.info.classes
        if start is None:
            eeg_part = type(self._eeg)(**self.eeg_config)
            eeg_part.fit(eeg, labels, DecoderInfo(classes, eeg=self.info.eeg), groups)
        else:
            eeg_part = type(self._eeg).from_state(start[0], dict(start[1]))
            eeg_part.fine_tune(eeg, labels, strategy, groups)
        nirs_part = FnirsDecoder(**self.nirs_config)
        nirs_part.fit(nirs, labels, DecoderInfo(classes, nirs=self.info.nirs), groups)
        return eeg_part, nirs_part

    # inference -----------------------------------------------------------------------------
    def _split(self, windows) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(windows, dict) or not {"eeg", "nirs"} <= set(windows):
            got = sorted(windows) if isinstance(windows, dict) else type(windows).__name__
            raise TypeError(
                "a hybrid decoder takes a dict {'eeg': windows, 'nirs': windows} "
                f"(see bci.decode.select_inputs), got {got}."
            )
        eeg, nirs = np.asarray(windows["eeg"]), np.asarray(windows["nirs"])
        if len(eeg) != len(nirs):
            raise ValueError(
                f"the hybrid needs as many fNIRS windows as EEG windows, got {len(nirs)} and "
                f"{len(eeg)}."
            )
        return eeg, nirs

    def _logits(self, windows):
        eeg, nirs = self._split(windows)
        fused = np.zeros((len(eeg), len(self.info.classes)))
        # a modality with weight 0 is not computed (its windows are still checked by _split)
        if self.weights[0] > 0:
            fused += self.weights[0] * log_softmax(self._eeg.logits(eeg))
        if self.weights[1] > 0:
            fused += self.weights[1] * log_softmax(self._nirs.logits(nirs))
        return fused

    # model file ----------------------------------------------------------------------------
    def _arrays(self):
        arrays = {"weights": self.weights, "fusion": np.array(json.dumps(self.fusion))}
        for prefix, part in (("eeg", self._eeg), ("nirs", self._nirs)):
            meta, part_arrays = part.state()
            arrays[f"{prefix}/__meta__"] = np.array(json.dumps(meta))
            arrays.update({f"{prefix}/{name}": value for name, value in part_arrays.items()})
        return arrays

    def _restore(self, arrays):
        self.weights = arrays["weights"]
        self.fusion = json.loads(str(arrays["fusion"]))
        parts = {"eeg": {}, "nirs": {}}
        for key, value in arrays.items():
            prefix, _, name = key.partition("/")
            if prefix in parts:
                parts[prefix][name] = value
        metas = {prefix: json.loads(str(part.pop("__meta__"))) for prefix, part in parts.items()}
        self._eeg = _eeg_class(metas["eeg"]["kind"]).from_state(metas["eeg"], parts["eeg"])
        self._nirs = FnirsDecoder.from_state(metas["nirs"], parts["nirs"])


def _eeg_class(kind: str) -> type[Decoder]:
    # imported here: bci.decode's registry imports this module
    from bci.decode import DECODERS

    cls = DECODERS.get(kind)
    if cls is None or tuple(cls.inputs) != ("eeg",):
        known = sorted(name for name, c in DECODERS.items() if tuple(c.inputs) == ("eeg",))
        raise ValueError(f"eeg_kind must be a registered EEG decoder {known}, got {kind!r}.")
    return cls
