"""Pretrain a population model on virtual subjects, for in-session fine-tuning.

Each subject is cued through the protocol's calibration block offline (``population``), its
windows aligned to itself (Euclidean alignment or Riemannian re-centering), and one decoder is
trained on everyone. The model file carries the protocol's preprocessing, so ``bci check``
refuses a protocol that would feed it different windows. Subjects used here must not be the
ones a benchmark evaluates on: :data:`POPULATION_SEEDS` and :data:`HELD_OUT_SEEDS` are disjoint.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bci.decode import DECODERS, Decoder, select_inputs
from bci.engine.fitting import session_info
from bci.protocol import Protocol
from bci.train.population import SubjectData, simulate_calibration

POPULATION_SEEDS = range(100, 140)
"""Virtual subjects of the pretraining population."""
HELD_OUT_SEEDS = range(0, 100)
"""Virtual subjects reserved for sessions and benchmarks (the demo's subject is 2)."""
POPULATION_TRIALS = 80
"""Calibration trials per pretraining subject."""


def software_version() -> str:
    try:
        return version("neuroloop")
    except PackageNotFoundError:
        return "unknown"


def simulate_population(protocol: Protocol, seeds, n_trials: int,
                        progress: bool = True) -> list[SubjectData]:  # fmt: skip
    """Calibration windows of each virtual subject in ``seeds`` (cue order seeded by subject)."""
    return [
        simulate_calibration(protocol, seed, n_trials, order_seed=seed)
        for seed in tqdm(
            list(seeds),
            desc="simulating subjects",
            unit="subject",
            leave=False,
            disable=not progress,
        )
    ]


def pool(subjects: list[SubjectData]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray,
                                               np.ndarray]:  # fmt: skip
    """Windows of every subject stacked: (windows, labels, groups, subject of each window);
    trial numbers are made unique across subjects."""
    names = subjects[0].windows.keys()
    windows = {name: np.concatenate([s.windows[name] for s in subjects]) for name in names}
    labels = np.concatenate([s.labels for s in subjects])
    offsets = np.cumsum([0] + [int(s.groups.max()) + 1 for s in subjects[:-1]])
    groups = np.concatenate(
        [s.groups + offset for s, offset in zip(subjects, offsets, strict=True)]
    )
    seeds = np.concatenate([np.full(len(s.labels), s.seed) for s in subjects])
    return windows, labels, groups, seeds


def pretrain(protocol: Protocol, kind: str, seeds=POPULATION_SEEDS,
             n_trials: int = POPULATION_TRIALS, alignment: str | None = None,
             progress: bool = True, subjects: list[SubjectData] | None = None,
             **config) -> Decoder:  # fmt: skip
    """Train a ``kind`` decoder on the virtual subjects ``seeds``.

    Parameters
    ----------
    protocol : Protocol
        Montage, preprocessing, epoching and cue timing of the sessions it will serve.
    kind : str
        A ``bci.decode.DECODERS`` key.
    alignment : {"euclidean", "riemann", "none"}, optional
        Per-subject alignment; default the protocol's ``decoder.alignment``, else Euclidean.
    subjects : list of SubjectData, optional
        The population already simulated (``simulate_population(protocol, seeds, n_trials)``),
        to pretrain several kinds on one simulation.
    **config
        Constructor arguments of the decoder (e.g. ``epochs``).
    """
    if kind not in DECODERS:
        raise ValueError(f"kind must be one of {sorted(DECODERS)}, got {kind!r}.")
    seeds = list(seeds)
    if subjects is None:
        subjects = simulate_population(protocol, seeds, n_trials, progress)
    seeds = [subject.seed for subject in subjects]  # what it is trained on, for provenance
    windows, labels, groups, subject_of = pool(subjects)
    first = subjects[0]
    info = session_info(protocol, first.eeg_sfreq, first.nirs_ch_names, first.nirs_sfreq)
    alignment = alignment or protocol.decoder.alignment or "euclidean"
    decoder = DECODERS[kind](alignment=alignment, **config)
    decoder.fit(select_inputs(info, windows), labels, info, groups, subject_of)
    decoder.preprocessing = protocol.preprocessing.model_dump(mode="json")
    decoder.provenance.created = datetime.now(UTC).isoformat(timespec="seconds")
    decoder.provenance.software = software_version()
    decoder.provenance.source = (
        f"virtual subjects {seeds[0]}-{seeds[-1]} ({len(seeds)}), {n_trials} trials each"
        if seeds == list(range(seeds[0], seeds[-1] + 1))
        else f"virtual subjects {seeds}, {n_trials} trials each"
    )
    step = {"step": "pretrain", "subjects": len(seeds), "windows": len(labels),
            "alignment": alignment, "config": decoder.config()}  # fmt: skip
    decoder.provenance.steps.append(step)
    return decoder


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
