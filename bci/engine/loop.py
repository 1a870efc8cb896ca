"""The engine's hot loop: inlet → preprocessing → decoder → controller → governor → stimulator.

One thread. It blocks briefly on the EEG inlet, pushes what arrived through the stages, writes to
the stimulator, publishes what it decided, and keeps the session's timeline. Nothing here sleeps,
logs per sample, or waits on a GUI; records are small appends at the decision rate.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
from threadpoolctl import threadpool_limits

from bci.acquire import Gap, Inlet, RingBuffer
from bci.decode import Decoder
from bci.engine.control import ControlInbox
from bci.engine.controllers import governor_step_s
from bci.engine.decoding import SessionDecoder
from bci.engine.finite import FiniteInput
from bci.engine.fitting import session_info
from bci.engine.outlets import SessionOutlets
from bci.engine.preprocess import channels_read, eeg_pipeline, fnirs_pipeline
from bci.engine.record import EngineRecord
from bci.engine.stimulation import NONFINITE, StimulationPath
from bci.engine.timeline import PlannedBlock, seconds_until_fit
from bci.protocol import Protocol
from bci.safety.dose import DoseTotals
from bci.safety.governor import Governor, GovernorSettings
from devices.stimulators import Stimulator, StimulatorError

_PULL_TIMEOUT_S = 0.002  # short enough to notice a stall and keep cue timing within ms
NONFINITE_INPUT = "non-finite input"
_WATCHDOG_REASONS = ("input stall", "decoder silent", NONFINITE, NONFINITE_INPUT)


class Engine:
    """Runs one protocol's timeline over connected inlets, outlets and a started stimulator.

    Parameters
    ----------
    protocol : Protocol
        The validated session protocol.
    eeg : Inlet
        Connected EEG inlet.
    outlets : SessionOutlets
        The session's outlets.
    stimulator : Stimulator
        Connected and started stimulator; only the governor's output reaches it.
    nirs : Inlet | None
        Connected fNIRS inlet, if the session has one.
    inbox : ControlInbox | None
        Where operator commands (emergency stop, re-arm, status, stop) arrive.
    governor_settings : GovernorSettings | None
        The limits the session resolved once (site file included); None: from the protocol.
    dose_prior : DoseTotals | None
        The participant's dose over the 24 h before the session (``bci.safety.ledger``).
    """

    def __init__(self, protocol: Protocol, eeg: Inlet, outlets: SessionOutlets,
                 stimulator: Stimulator, nirs: Inlet | None = None,
                 inbox: ControlInbox | None = None,
                 dose_prior: DoseTotals | None = None,
                 governor_settings: GovernorSettings | None = None) -> None:  # fmt: skip
        self.protocol, self.eeg, self.nirs = protocol, eeg, nirs
        self.outlets, self.stimulator = outlets, stimulator
        pre = protocol.preprocessing
        self.pipeline = eeg_pipeline(pre, eeg.ch_names, eeg.sfreq, eeg.ch_types)
        read = channels_read(pre, eeg.ch_names, eeg.ch_types)
        self.finite = FiniteInput(slice(None) if len(read) == eeg.n_channels else read, eeg.name)
        """What of each chunk the pipeline may read (its columns checked for NaN and inf)."""
        self.n_window = round(pre.window_s * eeg.sfreq)
        """Decoder window, samples."""
        self.processed = RingBuffer(int(seconds_until_fit(protocol) * eeg.sfreq), len(pre.picks))
        self.nirs_pipeline = self.nirs_processed = None
        if nirs is not None:
            self.nirs_pipeline = fnirs_pipeline(nirs.ch_names)
            horizon = max(seconds_until_fit(protocol), 2 * protocol.decoder.nirs_window_s)
            self.nirs_processed = RingBuffer(
                int(horizon * nirs.sfreq), len(self.nirs_pipeline.ch_names_out)
            )
        self.session_decoder = SessionDecoder(protocol, session_info(
            protocol, eeg.sfreq, self.nirs_pipeline.ch_names_out if nirs else (),
            nirs.sfreq if nirs else 0.0,
        ))  # fmt: skip
        """The session's decoder (a pretrained model that needs an input this session lacks
        is refused now, not after the calibration block)."""
        self.record = EngineRecord()
        self.inbox = inbox or ControlInbox()
        self.control_address: str | None = None
        """Where the control channel listens (set by the session)."""
        self.keep_model = None
        """``keep_model(decoder) -> dict | None``: run on the fit's worker thread once the
        session's decoder is fitted (the session saves it); what it returns is published in
        the session-info stream as the ``model`` record."""
        self.stim = StimulationPath(protocol, stimulator, outlets, self.record.commands,
                                    self._event, max_step_s=governor_step_s(pre.hop_s),
                                    sfreq=eeg.sfreq, pipeline=self.pipeline,
                                    prior=dose_prior, settings=governor_settings)  # fmt: skip
        self.record.pulse_latency_ms = self.stim.pulse_latency_ms  # one log, read live too
        # a decision is due every hop: one more than watchdog_stall_s (≤ 100 ms) late is silence
        self.decision_timeout_s = pre.hop_s + protocol.safety.watchdog_stall_s
        self.stalled = False
        self.eeg_started = False
        """Whether the first EEG samples arrived."""
        self.block: PlannedBlock | None = None
        self.elapsed_s = 0.0
        """Seconds since the session started (read by progress displays)."""
        self._last_decision = np.nan
        self._next_decision_time = -np.inf
        self._samples_since_gap = 0
        self._newest_read = -np.inf
        """Timestamp of the newest sample the filters read, s."""

    # events --------------------------------------------------------------------------------
    def _event(self, kind: str, time: float, **detail) -> None:
        self.outlets.event(kind, time, **detail)
        self.record.events.append({"kind": kind, "time": time, **detail})

    @property
    def monitor_problems(self) -> dict[str, str]:
        """What the session's supervisor reported (recorder, disk, source), by what it watches;
        each arrived as a ``monitor`` fact and was published once as a ``monitor`` event."""
        return self.stim.monitor_problems

    @property
    def governor(self) -> Governor:
        """The safety governor (the only road to the stimulator)."""
        return self.stim.governor

    @property
    def decoder(self) -> Decoder | None:
        """The session's fitted decoder (None until the fit block is over)."""
        return self.session_decoder.decoder

    @property
    def _decoding(self) -> bool:
        """Whether this is a closed-loop block whose controller has what it reads."""
        if self.block.kind != "closed_loop" or self.stim.paused:
            return False
        return self.decoder is not None or not self.protocol.uses_decoder

    # data ----------------------------------------------------------------------------------
    def _on_eeg(self, data: np.ndarray, times: np.ndarray, pulled_at: float) -> None:
        t0 = time.perf_counter_ns()
        if times[0] < self._newest_read - 0.5 / self.eeg.sfreq:
            # the source's clock went back: decide on its new clock from now on (waiting for it
            # to catch up with the old one would leave the loop blind as long as it jumped)
            self._next_decision_time = -np.inf
            self._event("clock_jump", pulled_at, stream=self.eeg.name,
                        seconds=round(float(times[0] - self._newest_read), 6))  # fmt: skip
        out, out_times = self.pipeline(data, times)
        self.processed.write(out, out_times)
        self._newest_read = float(times[-1])
        self._samples_since_gap += len(out_times)
        newest = float(out_times[-1])
        # one decision per hop, on the window ending at the newest sample: deciding on the
        # sample that completed the hop would waste up to a source chunk of latency, and a
        # backlog (after the fit) is summarized by its newest window, not replayed window by
        # window. The decision's sample_time says exactly which window it read.
        if (
            not self._decoding
            or newest < max(self._next_decision_time, self._block_start)
            or self._samples_since_gap < self.n_window  # no window straddles a gap
        ):
            return
        self._next_decision_time = newest + self.protocol.preprocessing.hop_s - 0.5 / self.eeg.sfreq
        window, _ = self.processed.latest(self.n_window)
        t1 = time.perf_counter_ns()
        row = self._read(window, newest)
        t2 = time.perf_counter_ns()
        if np.isfinite(row).all():
            self._last_decision = pylsl.local_clock()
        t3 = time.perf_counter_ns()
        try:
            command = self.stim.decide(row, newest, self.block.stimulate)
        finally:  # the decoder's output is published after the write: it never delays one
            t4 = time.perf_counter_ns()
            if self.protocol.uses_decoder:
                self.outlets.decision(row, newest)
        if command is None:  # nothing written (the phase path's amplitude did not change)
            return
        stages = np.array(
            [(pulled_at - times[-1]) * 1e3, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6,
             (t4 - t3) / 1e6, (command.write_time - command.sample_time) * 1e3]
        )  # fmt: skip
        self.record.latency_ms.append(stages)
        self.record.latency_times.append(command.write_time)
        self.outlets.latency_sample(stages, command.write_time)

    def _read(self, window: np.ndarray, newest: float) -> np.ndarray:
        """What the controller reads: the decoder's probabilities, the biomarker (band power
        relative to the baseline), or, for the phase trigger, the band's phase."""
        if self.protocol.uses_decoder:
            row = self.session_decoder.predict(window, self.nirs_processed)
            self.record.decisions.append((newest, row))
            return row
        if self.stim.trigger is not None:
            return np.array([self.stim.trigger.threshold])  # the phase path decides per chunk
        value = self.stim.biomarker(window)
        self.record.biomarker.append((newest, value))
        return np.array([value])

    def _on_phase(self) -> None:
        """Per chunk: the trigger reads the newest window of its 1-D signal."""
        n = self.stim.trigger.n_samples
        if self._samples_since_gap < n or not self._decoding:
            return
        window, times = self.processed.latest(n)
        self.stim.phase_update(window, float(times[-1]))
        self._last_decision = pylsl.local_clock()

    def _on_nirs(self) -> None:
        data, times = self.nirs.pull(0.0)
        if len(times):
            self.nirs_processed.write(*self.nirs_pipeline(data, times))

    def _restart_after(self, gaps: list[Gap], now: float, **detail) -> None:
        """A ``gap`` event for each gap; windows must not straddle one, and the filters restart
        from the data after it."""
        for gap in gaps:
            self.stim.gap(now, stream=gap.stream, start=gap.start, stop=gap.stop,
                          duration_s=gap.duration_s, missing=gap.missing, **detail)  # fmt: skip
        if gaps:
            self.pipeline.reset()
            self._samples_since_gap = 0

    def _finite_parts(self, data: np.ndarray, times: np.ndarray, now: float):
        """The chunk's samples the filters may read, part by part. A burst of NaN or inf trips
        the watchdog at once; the samples from the first finite one after it restart the
        filters, as after a gap (a ``gap`` event, so offline replay restarts there too), and the
        trip lifts at the next finite decision. A generator: the finite samples ahead of a
        burst that starts and ends in one chunk reach the filters before they restart."""
        split = self.finite(data, times, self._newest_read)
        if split.started:
            self.stim.nonfinite_at = now  # the trip lifts only after a finite decision
            self.stim.watchdog_trip(NONFINITE_INPUT, now)
        for i, part in enumerate(split.parts):
            if split.ended is not None and i == len(split.parts) - 1:  # the samples after it
                self._restart_after([split.ended], now, reason=NONFINITE_INPUT)
            yield part

    def _watch_input(self, now: float, arrived: bool) -> None:
        if arrived and self.stalled:
            self.stalled = False
            self._event("resume", now, stream=self.eeg.name)
        elif not arrived and not self.stalled:
            since = self.eeg.seconds_since_data(now)
            if since > self.protocol.safety.watchdog_stall_s:
                self.stalled = True
                self.stim.watchdog_trip("input stall", now)
                self._event("stall", now, stream=self.eeg.name, silent_ms=round(since * 1e3, 1))

    def _watch_decoder(self, now: float) -> None:
        """Trip while the input stalls or the decoder is silent; lift it when both are back."""
        if not (self._decoding and self.block.stimulate):
            return
        silent = now - self._last_decision > self.decision_timeout_s
        reason = self.governor.state.tripped
        # a non-finite output lifts only once a finite decision has come after it
        finite_since = self._last_decision > self.stim.nonfinite_at
        if silent and reason is None:
            self.stim.watchdog_trip("decoder silent", now)
        elif not silent and not self.stalled and reason in _WATCHDOG_REASONS and finite_since:
            self.stim.watchdog_recover(now)

    # timeline ------------------------------------------------------------------------------
    def _start_block(self, block: PlannedBlock, now: float) -> None:
        if self.block is not None:
            self.record.blocks.append((self.block.index, self.block.kind, self._block_start, now))
            if self.block.kind == "baseline":
                self._calibrate_from_baseline(now - self._block_start, now)
        self.block, self._block_start, self._next_trial = block, now, 0
        self._event("block", now, index=block.index, block=block.kind, stimulate=block.stimulate,
                    stalled=self.stalled)  # fmt: skip
        if block.kind == "closed_loop":
            self._last_decision = now  # from here the decoder watchdog counts
        self.stim.start_block(block.kind, block.stimulate, now, self.stalled)

    def _calibrate_from_baseline(self, seconds: float, now: float) -> None:
        """The controller's reference from the baseline block just ended (biomarker, phase)."""
        if not self.protocol.uses_decoder:
            n = min(int(seconds * self.eeg.sfreq), len(self.processed))
            hop = max(1, round(self.protocol.preprocessing.hop_s * self.eeg.sfreq))
            window, times = self.processed.latest(n)
            self.stim.calibrate(window, self.n_window, hop, now,
                                float(times[-1]) if n else float("nan"))  # fmt: skip

    def _run_cues(self, now: float) -> None:
        trials = self.block.trials
        while self._next_trial < 2 * len(trials):
            trial = trials[self._next_trial // 2]
            starting = self._next_trial % 2 == 0
            due = self._block_start + (trial.onset_s if starting else trial.stop_s)
            if now < due:
                return
            label = trial.label if starting else "rest"
            self.outlets.cue(label, now)
            if starting:
                self.record.cues.append((now, label, self.block.index))
            self._next_trial += 1

    def _fit_done(self) -> bool:
        """Start the fit on the first call of a fit block (cutting the calibration windows
        here, fitting on a worker thread); True once the decoder is ready."""
        if not self.session_decoder.fitting:
            cues = [(t, label) for t, label, index in self.record.cues
                    if self.protocol.blocks[index].kind == "calibration"]  # fmt: skip
            self.session_decoder.start_fit(self.processed, self.nirs_processed, cues,
                                           self.eeg.sfreq, self.keep_model)  # fmt: skip
        job = self.session_decoder.finished_fit()
        if job is None:
            return False
        _, report = job.result()
        self.record.fit = report
        self._event("fit", pylsl.local_clock(), decoder=report.kind,
                    **{k: v for k, v in report.to_json().items() if k != "kind"})  # fmt: skip
        if job.kept is not None:  # the saved model, named in the recording
            self.outlets.session_info("model", **job.kept)
        return True

    # the loop ------------------------------------------------------------------------------
    def run(self, blocks: list[PlannedBlock], stop: threading.Event | None = None,
            max_duration_s: float | None = None) -> EngineRecord:  # fmt: skip
        """Run the blocks in order; returns the record. Output is at zero when it returns."""
        stop = stop or threading.Event()
        start = pylsl.local_clock()
        self.record.start_time = start
        deadline = start + max_duration_s if max_duration_s else np.inf
        queue = list(blocks)
        next_nirs = start
        paused_at = None
        # one BLAS thread: multi-threaded numpy on a small window costs more in wake-ups than it
        # saves (p99 8-17 ms instead of < 1 ms on 2 shared cores). Set process-wide (OpenBLAS);
        # torch's own threads are the decoder's business (TorchDecoder threads/train_threads)
        blas = threadpool_limits(limits=1)
        failure = None
        try:  # from the first block on, every way out goes through the end ramp below
            self._start_block(queue.pop(0), start)
            if self.control_address:
                self._event("control", start, address=self.control_address)
            self.stim.write(self.eeg.newest_time, origin="start", decided_at=start)
            while not stop.is_set():
                data, times = self.eeg.pull(_PULL_TIMEOUT_S)
                now = pylsl.local_clock()
                self._watch_input(now, arrived=bool(len(times)))
                if len(times):
                    if not self.eeg_started:  # where offline replay starts the filters
                        self.eeg_started = True
                        self._event("input", now, stream=self.eeg.name,
                                    first_sample=float(times[0]))  # fmt: skip
                    self._restart_after(self.eeg.new_gaps(), now)
                    for part, part_times in self._finite_parts(data, times, now):
                        self._on_eeg(part, part_times, now)
                        if self.stim.trigger is not None:
                            self._on_phase()
                self._watch_decoder(now)
                newest = self.eeg.newest_time
                self.stim.serve(self.inbox, now, newest, self._status)
                self.governor.tick(now)  # charge and time integrate every iteration
                if self.governor.tripped:
                    self.stim.hold_safe(now, newest)
                elif self.stim.trigger is not None:
                    self.stim.phase_tick(now, newest, self._decoding and self.block.stimulate)
                self.stim.poll(now)
                if self.nirs is not None and now >= next_nirs:
                    self._on_nirs()
                    next_nirs = now + 0.05
                self.elapsed_s = now - start
                if now >= deadline:
                    self._event("deadline", now, minutes=max_duration_s / 60)
                    break
                if self.stim.stop_requested:
                    self._event("stop", now, by=self.stim.stop_requested)
                    break
                if self.stim.paused:
                    paused_at = paused_at or now
                    if self.stim.resume_requested is None:
                        continue  # the timeline stands still: no cues, no next block
                    self._resume(now, now - paused_at)
                    paused_at = None
                self._run_cues(now)
                if self.block.kind == "fit":
                    if not self._fit_done():
                        continue
                elif now - self._block_start < self.block.duration_s:
                    continue
                if not queue:
                    break
                self._start_block(queue.pop(0), pylsl.local_clock())
        except Exception as err:
            # a failed stage stops stimulation and is shown and recorded, never swallowed
            failure = err
            if isinstance(err, StimulatorError):
                self.stim.fail(err)
            self._event("error", pylsl.local_clock(), error=f"{type(err).__name__}: {err}")
            raise
        finally:
            blas.restore_original_limits()
            try:
                self.stim.ramp_to_zero(threading.Event().wait, lambda: self.eeg.newest_time,
                                       self.inbox)  # fmt: skip
            except Exception as err:
                self._event("error", pylsl.local_clock(), error=f"end ramp: {err}")
                if failure is None:  # never hide the error that ended the loop
                    raise
            now = pylsl.local_clock()
            if self.block is not None:
                self.record.blocks.append((self.block.index, self.block.kind, self._block_start,
                                           now))  # fmt: skip
            self.record.stop_time = now
            self._event("end", now)
        return self.record

    def _resume(self, now: float, paused_s: float) -> None:
        """The operator resumed after ``paused_s``: the block's clock and cues continue from
        where they stopped, and the decoder watchdog counts from now."""
        self._block_start += paused_s
        self._last_decision = now
        self.stim.resume(self.stim.resume_requested, now, self.block.kind, self.block.stimulate,
                         self.stalled)  # fmt: skip

    def _status(self) -> dict:
        """The session's state for a ``status`` command."""
        return {"block": self.block.kind, "block_index": self.block.index,
                "elapsed_s": round(self.elapsed_s, 3), "stalled": self.stalled,
                "paused": self.stim.paused is not None}  # fmt: skip
