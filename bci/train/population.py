"""Calibration data of virtual subjects, made offline through the engine's own stages.

A pretrained population model must see exactly what the engine will show it in a session: the
protocol's montage, rate, causal preprocessing and window cutting. So a virtual subject is
cued through a calibration block exactly as planned for a session (same cue and pause lengths),
its EEG and fNIRS go through :func:`~bci.engine.preprocess.eeg_pipeline` and
:func:`~bci.engine.preprocess.fnirs_pipeline` chunk by chunk, and the windows are cut by
:func:`~bci.engine.calibration.calibration_windows`. No LSL and no clock: it runs as fast as
the CPU allows (about 100× real time for 32 channels at 500 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bci.acquire import RingBuffer
from bci.engine.calibration import calibration_windows, windows_ending_at
from bci.engine.preprocess import eeg_pipeline, fnirs_pipeline
from bci.engine.timeline import plan_blocks
from bci.protocol import Protocol
from bci.protocol.schema import Block
from bci.streams import CUE_REST
from devices.virtual_subject import EegSettings, FnirsSettings, SubjectParams, VirtualSubject

_CHUNK_S = 0.5
"""Generation and preprocessing chunk, s (results do not depend on it)."""
LEAD_S = 8.0
"""Rest before the first cue, s: filters settle and the first fNIRS window has history."""


@dataclass(frozen=True)
class SubjectData:
    """One subject's labeled calibration windows."""

    seed: int
    """Virtual subject seed."""
    windows: dict[str, np.ndarray]
    """``"eeg"``: shape (n_windows, n_samples, n_picks), µV, preprocessed; ``"nirs"`` (when the
    protocol's source has fNIRS): HbO/HbR windows ending with each EEG window, mol/L."""
    labels: np.ndarray
    """Class of each window, shape (n_windows,)."""
    groups: np.ndarray
    """Trial of each window, shape (n_windows,)."""
    eeg_ch_names: tuple[str, ...]
    nirs_ch_names: tuple[str, ...]
    eeg_sfreq: float
    nirs_sfreq: float

    def trials(self, keep: np.ndarray) -> SubjectData:
        """The windows of the trials in ``keep`` (trial indices)."""
        rows = np.isin(self.groups, keep)
        return replace(
            self,
            windows={name: value[rows] for name, value in self.windows.items()},
            labels=self.labels[rows],
            groups=self.groups[rows],
        )


def calibration_block(protocol: Protocol, n_trials: int) -> Block:
    """The protocol's first calibration block (cue and pause lengths) with ``n_trials`` trials."""
    template = next((b for b in protocol.blocks if b.kind == "calibration"), None)
    if template is None:
        return Block(kind="calibration", trials=n_trials)
    return template.model_copy(update={"trials": n_trials})


def simulate_calibration(
    protocol: Protocol,
    seed: int,
    n_trials: int,
    order_seed: int = 0,
    nirs_window_s: float | None = None,
) -> SubjectData:
    """Cue virtual subject ``seed`` through a calibration block of ``n_trials`` trials.

    Parameters
    ----------
    protocol : Protocol
        Montage (``source``), preprocessing, epoching (``decoder``) and cue timing.
    seed : int
        The subject (``SubjectParams.from_seed``).
    n_trials : int
        Trials, classes balanced.
    order_seed : int
        Seed of the cue order and pauses.
    nirs_window_s : float, optional
        fNIRS window length, s; default the protocol's ``decoder.nirs_window_s``.
    """
    src, pre = protocol.source, protocol.preprocessing
    classes = protocol.decoder.classes
    block = plan_blocks([calibration_block(protocol, n_trials)], order_seed, classes)[0]
    subject = VirtualSubject(
        SubjectParams.from_seed(seed),
        EegSettings(n_channels=src.eeg_channels, sfreq=src.eeg_srate, line_freq=src.line_freq),
        FnirsSettings() if src.fnirs else None,
    )
    sfreq = src.eeg_srate
    schedule = [(LEAD_S + t.onset_s, t.label) for t in block.trials]
    schedule += [(LEAD_S + t.stop_s, CUE_REST) for t in block.trials]
    schedule.sort()
    duration = LEAD_S + block.duration_s + 1.0

    eeg = eeg_pipeline(pre, subject.eeg_channel_names, sfreq)
    eeg_ring = RingBuffer(int(duration * sfreq) + 1, len(pre.picks))
    nirs = fnirs_pipeline(subject.fnirs_channel_names) if src.fnirs else None
    nirs_sfreq = subject.fnirs_settings.sfreq if src.fnirs else 0.0
    nirs_ring = RingBuffer(int(duration * nirs_sfreq) + 1, len(nirs.ch_names_out)) if nirs else None

    n_total = int(duration * sfreq)
    chunk = max(int(_CHUNK_S * sfreq), 1)
    done = nirs_done = 0
    for t_cue, label in [*schedule, (np.inf, None)]:
        stop = n_total if label is None else min(n_total, int(np.ceil(t_cue * sfreq)))
        while done < stop:
            n = min(chunk, stop - done)
            data = subject.eeg(n)
            times = (done + np.arange(n)) / sfreq
            eeg_ring.write(*eeg(data, times))
            done += n
            if nirs is not None:
                n_nirs = int(done / sfreq * nirs_sfreq) - nirs_done
                if n_nirs > 0:
                    nirs_times = (nirs_done + np.arange(n_nirs)) / nirs_sfreq
                    nirs_ring.write(*nirs(subject.fnirs(n_nirs), nirs_times))
                    nirs_done += n_nirs
        if label is not None:
            subject.cue(label, t_cue)

    cues = [(LEAD_S + t.onset_s, t.label) for t in block.trials]
    eeg_windows, labels, groups, ends = calibration_windows(
        eeg_ring, cues, sfreq, protocol.decoder, pre
    )
    windows = {"eeg": eeg_windows}
    if nirs is not None:
        n_nirs = round((nirs_window_s or protocol.decoder.nirs_window_s) * nirs_sfreq)
        windows["nirs"] = windows_ending_at(nirs_ring, ends, n_nirs, nirs_sfreq)
    return SubjectData(
        seed, windows, labels, groups, tuple(pre.picks),
        tuple(nirs.ch_names_out) if nirs else (), sfreq, nirs_sfreq,
    )  # fmt: skip
