"""Recording files made in the test from a virtual subject: EDF, BDF, FIF, BrainVision, SNIRF
(MNE, MNE-NIRS) and XDF (a minimal writer of the XDF 1.0 chunk format that pyxdf reads)."""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from devices.virtual_subject import EegSettings, FnirsSettings, SubjectParams, VirtualSubject
from devices.virtual_subject.fnirs import optode_positions


@dataclass(frozen=True)
class Session:
    """A cued motor-imagery session of one virtual subject."""

    eeg: np.ndarray
    """shape (n_samples, n_channels), µV."""
    eeg_names: tuple[str, ...]
    sfreq: float
    nirs: np.ndarray | None
    """shape (n_nirs_samples, 16), raw intensity."""
    nirs_names: tuple[str, ...]
    nirs_sfreq: float
    onsets: np.ndarray
    """Cue times, s from the first sample."""
    labels: tuple[str, ...]


def simulate(seed: int = 1, n_trials: int = 24, sfreq: float = 250.0, n_channels: int = 16,
             cue_s: float = 3.0, trial_s: float = 6.0, fnirs: bool = False,
             lead_s: float = 3.0, tail_s: float = 3.0) -> Session:  # fmt: skip
    """Cue virtual subject ``seed`` through ``n_trials`` balanced left/right trials, one every
    ``trial_s`` (imagery ``cue_s`` long), in a shuffled order."""
    subject = VirtualSubject(
        SubjectParams.from_seed(seed),
        EegSettings(n_channels=n_channels, sfreq=sfreq),
        FnirsSettings() if fnirs else None,
    )
    labels = np.array(["left", "right"] * (n_trials // 2))
    np.random.default_rng(seed).shuffle(labels)
    onsets = lead_s + trial_s * np.arange(n_trials)
    schedule = sorted([(t, str(lab)) for t, lab in zip(onsets, labels, strict=True)]
                      + [(t + cue_s, "rest") for t in onsets])  # fmt: skip
    duration = onsets[-1] + trial_s + tail_s
    nirs_sfreq = subject.fnirs_settings.sfreq if fnirs else 0.0
    eeg, nirs, done, nirs_done = [], [], 0, 0
    for when, label in [*schedule, (duration, None)]:
        stop = int(np.ceil(when * sfreq))
        eeg.append(subject.eeg(stop - done))
        done = stop
        if fnirs:
            n = int(done / sfreq * nirs_sfreq) - nirs_done
            nirs.append(subject.fnirs(n))
            nirs_done += n
        if label is not None:
            subject.cue(label, when)
    return Session(
        np.concatenate(eeg), subject.eeg_channel_names, sfreq,
        np.concatenate(nirs) if fnirs else None, subject.fnirs_channel_names, nirs_sfreq,
        onsets, tuple(labels.tolist()),
    )  # fmt: skip


def split(session: Session) -> tuple[Session, Session]:
    """Two runs: the first half of the trials, and the second (cut 2 s before its first cue)."""
    half = len(session.onsets) // 2
    cut = session.onsets[half] - 2.0
    n, m = round(cut * session.sfreq), round(cut * session.nirs_sfreq)
    first = Session(
        session.eeg[:n], session.eeg_names, session.sfreq,
        None if session.nirs is None else session.nirs[:m], session.nirs_names,
        session.nirs_sfreq, session.onsets[:half], session.labels[:half],
    )  # fmt: skip
    second = Session(
        session.eeg[n:], session.eeg_names, session.sfreq,
        None if session.nirs is None else session.nirs[m:], session.nirs_names,
        session.nirs_sfreq, session.onsets[half:] - n / session.sfreq, session.labels[half:],
    )  # fmt: skip
    return first, second


def eeg_raw(session: Session, codes: dict[str, str] | None = None) -> mne.io.RawArray:
    """The session's EEG as an MNE raw (V) with one annotation per cue, described by
    ``codes[label]`` (default the label itself)."""
    info = mne.create_info(list(session.eeg_names), session.sfreq, "eeg")
    raw = mne.io.RawArray(session.eeg.T * 1e-6, info, verbose="error")
    codes = codes or {}
    descriptions = [codes.get(label, label) for label in session.labels]
    raw.set_annotations(mne.Annotations(session.onsets, 0.0, descriptions))
    return raw


def write_mne(session: Session, path: Path, codes: dict[str, str] | None = None) -> Path:
    """EDF, BDF or BrainVision (``mne.export.export_raw``) or FIF (``raw.save``) by suffix."""
    raw = eeg_raw(session, codes)
    if path.suffix == ".fif":
        raw.save(path, verbose="error")
    else:
        mne.export.export_raw(path, raw, verbose="error")
    return path


def write_snirf(session: Session, path: Path, codes: dict[str, str] | None = None) -> Path:
    """The session's fNIRS intensities as SNIRF (``mne_nirs.io.write_raw_snirf``)."""
    from mne_nirs.io import write_raw_snirf

    info = mne.create_info(list(session.nirs_names), session.nirs_sfreq, "fnirs_cw_amplitude")
    positions = optode_positions()
    for channel in info["chs"]:
        pair, wavelength = channel["ch_name"].split(" ")
        source, detector = pair.split("_")
        channel["loc"][3:6] = positions[source]
        channel["loc"][6:9] = positions[detector]
        channel["loc"][:3] = (positions[source] + positions[detector]) / 2
        channel["loc"][9] = float(wavelength)
    raw = mne.io.RawArray(session.nirs.T, info, verbose="error")
    raw.set_meas_date(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    raw.info["subject_info"] = {"his_id": "virtual"}
    codes = codes or {}
    raw.set_annotations(
        mne.Annotations(session.onsets, 1.0, [codes.get(lab, lab) for lab in session.labels])
    )
    write_raw_snirf(raw, str(path))
    return path


# XDF -----------------------------------------------------------------------------------------
def _chunk(tag: int, content: bytes) -> bytes:
    return b"\x08" + struct.pack("<QH", len(content) + 2, tag) + content


def _varlen(n: int) -> bytes:
    return b"\x08" + struct.pack("<Q", n)


def _channels_xml(names, kinds, unit: str) -> str:
    kinds = [kinds] * len(names) if isinstance(kinds, str) else kinds
    return "".join(
        f"<channel><label>{n}</label><type>{k}</type><unit>{unit}</unit></channel>"
        for n, k in zip(names, kinds, strict=True)
    )


def write_xdf(path: Path, streams: list[dict]) -> Path:
    """A minimal XDF 1.0 file.

    Parameters
    ----------
    streams : list of dict
        Each with ``name``, ``type``, ``srate`` (0: irregular), ``times`` (s) and either
        ``data`` (array (n_samples, n_channels), float64) with ``channels`` (names), ``ch_type``
        (one type, or one per channel) and ``unit``, or ``markers`` (list of str).
    """
    out = [b"XDF:", _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')]
    for sid, s in enumerate(streams, start=1):
        markers = "markers" in s
        n_channels = 1 if markers else s["data"].shape[1]
        desc = "" if markers else "<channels>" + _channels_xml(
            s["channels"], s["ch_type"], s["unit"]) + "</channels>"  # fmt: skip
        header = (
            f'<?xml version="1.0"?><info><name>{s["name"]}</name><type>{s["type"]}</type>'
            f"<channel_count>{n_channels}</channel_count><nominal_srate>{s['srate']}"
            f"</nominal_srate><channel_format>{'string' if markers else 'double64'}"
            f"</channel_format><source_id>{s['name']}</source_id><created_at>0</created_at>"
            f"<desc>{desc}</desc></info>"
        )
        out.append(_chunk(2, struct.pack("<I", sid) + header.encode()))
        body = bytearray()
        for i, stamp in enumerate(s["times"]):
            body += b"\x08" + struct.pack("<d", stamp)
            if markers:
                text = s["markers"][i].encode()
                body += _varlen(len(text)) + text
            else:
                body += s["data"][i].astype("<f8").tobytes()
        samples = struct.pack("<I", sid) + _varlen(len(s["times"])) + bytes(body)
        out.append(_chunk(3, samples))
        for t in (s["times"][0], s["times"][-1] + 1.0):
            out.append(_chunk(4, struct.pack("<Idd", sid, t, 0.0)))
        footer = (
            f'<?xml version="1.0"?><info><first_timestamp>{s["times"][0]}</first_timestamp>'
            f"<last_timestamp>{s['times'][-1]}</last_timestamp><sample_count>{len(s['times'])}"
            "</sample_count></info>"
        )
        out.append(_chunk(6, struct.pack("<I", sid) + footer.encode()))
    path.write_bytes(b"".join(out))
    return path


def write_session_xdf(session: Session, path: Path, t0: float = 1000.0) -> Path:
    """The session as a NeuroLoop session XDF: ``EEG`` (µV, a ``SampleIndex`` MISC channel
    appended), ``NIRS`` (when simulated), ``Markers`` cues with a ``rest`` after each trial, and
    a JSON ``Events`` stream that must be ignored."""
    n = len(session.eeg)
    eeg = np.column_stack([session.eeg, np.arange(n)])
    cue_times = t0 + session.onsets
    rest_times = cue_times + 3.0
    order = np.argsort(np.concatenate([cue_times, rest_times]), kind="stable")
    cues = np.array([*session.labels, *["rest"] * len(rest_times)])[order].tolist()
    streams = [
        {"name": "Test-EEG", "type": "EEG", "srate": session.sfreq, "data": eeg,
         "times": t0 + np.arange(n) / session.sfreq, "unit": "microvolts",
         "channels": [*session.eeg_names, "SampleIndex"],
         "ch_type": ["EEG"] * len(session.eeg_names) + ["MISC"]},
        {"name": "Test-Cues", "type": "Markers", "srate": 0, "markers": cues,
         "times": np.sort(np.concatenate([cue_times, rest_times]))},
        {"name": "Test-Events", "type": "Events", "srate": 0, "markers": ['{"kind": "fit"}'],
         "times": np.array([t0 + 1.0])},
    ]  # fmt: skip
    if session.nirs is not None:
        m = len(session.nirs)
        streams.append(
            {"name": "Test-NIRS", "type": "NIRS", "srate": session.nirs_sfreq,
             "data": session.nirs, "times": t0 + np.arange(m) / session.nirs_sfreq,
             "unit": "intensity", "channels": list(session.nirs_names), "ch_type": "NIRS"}
        )  # fmt: skip
    return write_xdf(path, streams)
