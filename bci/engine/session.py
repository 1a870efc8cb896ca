"""A whole session: spawn the source, resolve it, record, run the engine, summarize."""

from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import sys
import threading
import uuid
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from bci import __version__
from bci.acquire import Inlet, InletSettings, StreamQuery, resolve_streams
from bci.engine.control import ControlInbox, ControlServer
from bci.engine.controllers import governor_step_s
from bci.engine.fitting import write_fit_report
from bci.engine.loop import Engine, EngineRecord
from bci.engine.outlets import SessionOutlets
from bci.engine.recording import (
    announce_late_streams,
    late_streams,
    recorded_streams,
    recording_info,
    stop_recorder,
)
from bci.engine.session_files import (
    SummaryWriter,
    claim_out_dir,
    running_summary,
    save_model_atomic,
    write_final_summary,
    write_resolved_protocol,
)
from bci.engine.summary import build_summary, plot_summary
from bci.engine.supervise import RecordingCheck, SourceWatch, Supervisor
from bci.engine.timeline import plan_blocks, planned_duration_s
from bci.protocol import Protocol
from bci.record import Recorder
from bci.safety.ledger import open_dose
from bci.safety.site import load_site_limits
from bci.streams import EEG_TYPE, NIRS_TYPE, stream_names
from devices.stimulators import SessionLimits, open_stimulator

_RECORDER_FLUSH_S = 0.5
"""Time given to LabRecorder to receive the last samples before it closes the file, s."""


def virtual_subject_command(protocol: Protocol) -> list[str]:
    """The ``bci simulate`` command line that plays the protocol's virtual subject."""
    src = protocol.source
    command = [
        sys.executable, "-m", "bci", "simulate",
        "--prefix", protocol.session.prefix,
        "--seed", str(src.seed),
        "--channels", str(src.eeg_channels),
        "--srate", f"{src.eeg_srate:g}",
        "--line-freq", str(src.line_freq),
        "--chunk-ms", f"{src.chunk_s * 1e3:g}",
        "--stop-on-stdin-eof",  # a killed session leaves no subject streaming
    ]  # fmt: skip
    if not src.fnirs:
        command.append("--no-fnirs")
    if src.sample_index:
        command.append("--sample-index")
    if not src.listen:
        command.append("--no-listen")
    return command


class VirtualSubjectProcess:
    """The virtual subject as a child process, terminated on exit."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command, self.log_path = command, log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> VirtualSubjectProcess:
        self._log = open(self.log_path, "w")
        # its own session: a terminal's Ctrl-C (the engine's emergency stop) must not reach it
        self.process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,  # closed when this process ends, however it ends
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdin.close()
        self._log.close()


def _source_queries(protocol: Protocol) -> tuple[StreamQuery, StreamQuery | None]:
    names = stream_names(protocol.session.prefix)
    src = protocol.source
    if src.kind == "virtual":
        eeg = StreamQuery(name=names["eeg"], type=EEG_TYPE)
        nirs = StreamQuery(name=names["nirs"], type=NIRS_TYPE) if src.fnirs else None
    else:
        eeg = StreamQuery(name=src.eeg_stream or names["eeg"], source_id=src.eeg_source_id)
        nirs = StreamQuery(name=src.nirs_stream) if src.nirs_stream else None
    return eeg, nirs


def _progress(engine: Engine, total_s: float, done: threading.Event,
              recorder: Recorder | None) -> None:  # fmt: skip
    # a separate thread, so the hot loop never writes to the terminal
    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} s {postfix}"
    with tqdm(total=round(total_s), desc="session", bar_format=fmt, leave=True) as bar:
        while not done.wait(0.5):
            block = engine.block.kind if engine.block else ""
            xdf = f" xdf={recorder.size_bytes / 1e6:.1f}MB" if recorder else ""
            bar.set_postfix_str(f"{block} trials={len(engine.record.cues)}{xdf}", refresh=False)
            bar.update(max(0, min(round(engine.elapsed_s), bar.total) - bar.n))


def session_record(protocol: Protocol, protocol_name: str, protocol_text: str,
                   overrides: list[str], note: str | None) -> dict:  # fmt: skip
    """The session-info stream's first record: what ran, where, by whom. ``resolved`` is the
    validated protocol (overrides applied), what offline replay rebuilds the session from."""
    record = {
        "protocol_name": str(protocol_name), "protocol": protocol_text,
        "overrides": list(overrides), "resolved": protocol.model_dump(mode="json"),
        "software": {"neuroloop": __version__, "python": platform.python_version()},
        "host": socket.gethostname(), "platform": platform.platform(),
        "operator": getpass.getuser(), "note": note or protocol.session.operator_notes,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }  # fmt: skip
    if protocol.decoder.model is not None:
        from bci.train.files import sha256_of

        model = Path(protocol.decoder.model)
        record["model"] = {"file": str(model), "sha256": sha256_of(model)}
    return record


def run_session(protocol: Protocol, protocol_name: str, protocol_text: str, out_dir: Path,
                max_minutes: float | None = None, stop: threading.Event | None = None,
                progress: bool = True, inbox: ControlInbox | None = None,
                on_engine=None, overrides: list[str] = (),
                note: str | None = None) -> tuple[dict, EngineRecord]:  # fmt: skip
    """Run a protocol end to end; writes ``summary.json``, ``summary.png`` (and the XDF).

    The session folder is claimed first (one that holds a session is refused), the resolved
    protocol is written before anything starts, and ``summary.json`` is rewritten atomically
    while the session runs (``"complete": false`` until its end; the reason if it fails).

    ``inbox`` takes operator commands (Ctrl-C's emergency stop); with ``control.enabled`` a
    ZeroMQ server feeds it too. ``on_engine(engine)`` is called once the engine exists (tests,
    the GUI), before the session starts. ``overrides`` (the ``--set`` applied) and the
    operator's ``note`` go into the recording's session-info stream.

    Returns
    -------
    summary : dict
        The content of ``summary.json``.
    record : EngineRecord
        Everything the engine did, decision by decision.
    """
    out_dir = claim_out_dir(Path(out_dir), protocol.recording.filename)
    write_resolved_protocol(out_dir, protocol, protocol_name, protocol_text, list(overrides))
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    summary_path = out_dir / "summary.json"
    parts = {"writer": None, "engine": None}  # what the failure path needs
    # the participant's dose over the last 24 h: refused here, before anything starts, when
    # nothing is left of the daily budget
    try:
        dose = open_dose(protocol, f"{out_dir.name}-{uuid.uuid4().hex[:8]}")
    except ValueError as err:
        _write_failed_summary(summary_path, parts, protocol_name, list(overrides), started, err)
        raise
    parts["dose"] = dose
    try:
        summary, record = _run(protocol, protocol_name, protocol_text, out_dir, max_minutes,
                               stop, progress, inbox, on_engine, list(overrides), note, started,
                               parts)  # fmt: skip
    except BaseException as err:
        _write_failed_summary(summary_path, parts, protocol_name, list(overrides), started, err)
        raise
    write_final_summary(summary_path, summary)
    plot_summary(summary, record, protocol, out_dir / "summary.png")
    return summary, record


def _run(protocol, protocol_name, protocol_text, out_dir, max_minutes, stop, progress, inbox,
         on_engine, overrides, note, started, parts) -> tuple[dict, EngineRecord]:  # fmt: skip
    stim_settings = protocol.stimulator
    blocks = plan_blocks(protocol.blocks, protocol.session.seed, protocol.decoder.classes)
    # the limits in force, resolved once (site file included) for the governor and the driver
    settings = stim_settings.governor_settings(protocol.safety.stop_ramp_s,
                                               governor_step_s(protocol.preprocessing.hop_s))
    limits = SessionLimits.from_governor(settings)
    with ExitStack() as stack:
        if protocol.source.kind == "virtual":
            stack.enter_context(
                VirtualSubjectProcess(
                    virtual_subject_command(protocol), out_dir / "virtual_subject.log"
                )
            )
        outlets = SessionOutlets(
            protocol.session.prefix, protocol.decoder.classes, stim_settings.modality,
            stim_settings.anode, stim_settings.cathode,
        )  # fmt: skip
        stack.callback(outlets.close)
        eeg_query, nirs_query = _source_queries(protocol)
        queries = [eeg_query] + ([nirs_query] if nirs_query else [])
        infos = resolve_streams(queries, timeout_s=protocol.source.resolve_timeout_s)
        eeg = stack.enter_context(Inlet(infos[0], InletSettings(buffer_s=60)))
        nirs = stack.enter_context(Inlet(infos[1])) if nirs_query else None
        stimulator = stack.enter_context(open_stimulator(stim_settings, limits))
        # built before recording starts, so a stream the protocol cannot use is refused first
        inbox = inbox or ControlInbox()
        dose = parts["dose"]
        engine = parts["engine"] = Engine(protocol, eeg, outlets, stimulator, nirs, inbox,
                                          dose_prior=dose.prior if dose else None,
                                          governor_settings=settings)  # fmt: skip
        required = protocol.recording.enabled and protocol.recording.required
        supervisor = Supervisor(inbox, {"recorder": "Stimulation ramps to zero and stays there "
                                        "(recording.required)" if required else
                                        "Stimulation goes on unrecorded (recording.required = "
                                        "false)"})  # fmt: skip
        stack.callback(supervisor.stop)
        # on a thread of its own: its network lookups (up to 0.5 s) never delay the others
        source_watch = Supervisor(inbox)
        source_watch.checks["source"] = SourceWatch(lambda: engine.stalled, eeg)
        stack.callback(source_watch.stop)
        if dose is not None:  # the writer's last line (after the end ramp) once the loop is over
            ledger = dose.start_writer(lambda: engine.governor.session_totals)
            stack.callback(_close_ledger, ledger)
            supervisor.checks["ledger"] = ledger.check
            supervisor.consequence["ledger"] = "Stimulation ramps to zero and stays there"
        if protocol.control.enabled:
            server = ControlServer(inbox, protocol.control.address,
                                   keys_dir=protocol.control.keys_dir)  # fmt: skip
            engine.control_address = server.start()
            stack.callback(server.stop)
            if progress:
                print(f"control channel: {engine.control_address} (bci control "
                      "estop|rearm|status|stop --address ...)", flush=True)  # fmt: skip
        engine.keep_model = lambda decoder: _keep_model(decoder, out_dir)
        if on_engine is not None:
            on_engine(engine)
        recorder, recorder_errors = None, []
        if protocol.recording.enabled:
            names = [eeg.name] + ([nirs.name] if nirs else []) + outlets.stream_list
            recorder = Recorder(out_dir / protocol.recording.filename,
                                recorded_streams(protocol, names))  # fmt: skip
            stack.callback(stop_recorder, recorder, recorder_errors)
            # runs before the stop: samples pushed last (the end event) reach the file
            stack.callback(threading.Event().wait, _RECORDER_FLUSH_S)
            recorder.start()
            outlets.wait_for_consumers()
            recorder.watch(late_streams(protocol), announce_late_streams if progress else None)
            supervisor.checks["recorder"] = RecordingCheck(
                recorder, flowing=lambda: engine.eeg_started and not engine.stalled)
            if progress:
                print(f"recording {len(recorder.stream_names)} streams to {recorder.path}",
                      flush=True)  # fmt: skip
        info = session_record(protocol, protocol_name, protocol_text, overrides, note)
        info["safety"] = {"site": load_site_limits().describe(), "limits": asdict(settings),
                          "dose_before": asdict(dose.prior) if dose else None}  # fmt: skip
        outlets.session_info("session", **info)
        writer = parts["writer"] = SummaryWriter(
            out_dir / "summary.json",
            lambda: running_summary(engine, protocol_name, overrides, started),
            lambda: engine.block.index if engine.block is not None else None,
        ).start()  # fmt: skip
        stack.callback(writer.stop)
        supervisor.start()
        source_watch.start()
        done = threading.Event()
        if progress:
            monitor = threading.Thread(
                # fitting takes a few seconds the plan cannot know
                target=_progress,
                args=(engine, planned_duration_s(blocks) + 3, done, recorder),
                daemon=True,
            )
            monitor.start()
        # samples from before the recorder held every stream are not part of the session
        for inlet in (eeg, nirs):
            if inlet is not None:
                inlet.discard_pending()
        try:
            record = engine.run(blocks, stop, max_minutes * 60 if max_minutes else None)
        finally:
            done.set()
            stop_error = _stop_stimulator(stimulator)  # the device off before anything slow
            if engine.record.fit is not None:
                _write_fit_report(engine, out_dir)
        stack.close()  # stop the recorder and the subject before reading the file
        recording = recording_info(recorder, recorder_errors) if recorder else None
        if "recorder" in engine.monitor_problems:  # what broke it mid-session
            recording["problem"] = engine.monitor_problems["recorder"]
        summary = build_summary(
            protocol, protocol_name, record, eeg, nirs, outlets, engine.governor.state, recording
        )
        summary["stimulation"]["stop_error"] = stop_error
        summary.update(overrides=overrides, started=started,
                       participant=protocol.session.participant,
                       dose_before=asdict(dose.prior) if dose else None)  # fmt: skip
    return summary, record


def _close_ledger(ledger) -> None:
    """Write the session's last dose and its end line; a failure is said, never raised over
    the session's own outcome (every earlier second is already on the disk)."""
    try:
        ledger.close()
    except OSError as err:
        print(f"WARNING: the dose ledger {ledger.path} could not take the session's last "
              f"second: {err}", file=sys.stderr)  # fmt: skip


def _write_failed_summary(path: Path, parts: dict, protocol_name: str, overrides: list[str],
                          started: str, err: BaseException) -> None:  # fmt: skip
    """The session failed: ``summary.json`` says so and why, with its figures so far."""
    if parts["writer"] is not None:
        parts["writer"].stop()
    reason = "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else \
        f"{type(err).__name__}: {err}"  # fmt: skip
    try:
        engine = parts["engine"]
        summary = running_summary(engine, protocol_name, overrides, started) if engine else \
            {"protocol": protocol_name, "overrides": overrides, "started": started}  # fmt: skip
        summary.pop("complete", None)
        summary.pop("reason", None)
        write_final_summary(path, summary, reason=f"the session failed: {reason}")
    except Exception as write_error:  # never hide the error that ended the session
        print(f"WARNING: could not write {path}: {write_error}", file=sys.stderr)


def _stop_stimulator(stimulator) -> str | None:
    """Stop the stimulator (zero, disarm) and say so loudly if the device cannot confirm it."""
    from devices.stimulators import StimulatorError

    try:
        stimulator.stop()
    except StimulatorError as err:
        print(f"WARNING: the stimulator did not confirm it stopped: {err}", file=sys.stderr)
        return str(err)
    return None


def _keep_model(decoder, out_dir: Path) -> dict | None:
    """Save the session's fitted decoder (for replay and later sessions); returns its file name
    and SHA-256. A failure is reported and never stops the session."""
    from bci.train.files import sha256_of

    path = out_dir / "model.npz"
    try:
        save_model_atomic(decoder, path)
        return {"file": path.name, "sha256": sha256_of(path)}
    except Exception as err:  # the session's own result matters more
        print(f"warning: could not save the session's model: {err}", file=sys.stderr)
        return None


def _write_fit_report(engine: Engine, out_dir: Path) -> None:
    """The fitted decoder's training report; a failure is reported, never raised."""
    try:
        write_fit_report(out_dir / "training_report.png", engine.decoder, engine.record.fit)
    except Exception as err:  # the session's own result matters more
        print(f"warning: could not write the training report: {err}", file=sys.stderr)


