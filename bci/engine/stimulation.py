"""The engine's stimulation path: controller → governor → stimulator, the phase trigger, the
emergency stop and the operator's commands. Used by the loop thread only."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import pylsl

from bci.control.phase import PhaseTrigger
from bci.engine.control import ControlInbox
from bci.engine.controllers import build_policy, build_trigger
from bci.engine.record import FloatLog
from bci.protocol import Protocol
from bci.safety.command import GovernedCommand
from bci.safety.dose import DoseTotals
from bci.safety.governor import Governor, GovernorSettings
from devices.stimulators import StimCommand, Stimulator, StimulatorError

NONFINITE = "decoder non-finite output"
_TELEMETRY_EVERY_S = 1.0
_log = logging.getLogger("bci.safety")


class StimulationPath:
    """What reaches the stimulator, and only through the governor.

    Parameters
    ----------
    protocol : Protocol
    stimulator : Stimulator
        Connected and started.
    outlets : SessionOutlets
        Where commands are published.
    commands : CommandLog | list
        Where every :class:`StimCommand` written is appended (the engine record's log).
    event : callable
        ``event(kind, time, **detail)``: publish and record an event.
    max_step_s : float
        The governor's longest slew step (near the decision hop), s.
    sfreq : float
        EEG rate, Hz.
    pipeline : Pipeline
        The engine's EEG preprocessing (the phase trigger corrects its filters' phase lag).
    clock : callable
        The session clock (``pylsl.local_clock``; offline replay gives the recorded one).
    settings : GovernorSettings | None
        The governor's settings as the session resolved them (site file included); None:
        resolved here from the protocol.
    prior : DoseTotals | None
        The participant's dose over the 24 h before the session (``bci.safety.ledger``).

    Notes
    -----
    Everything that changes what the governor allows comes in through a method that records
    it first as an event (``block``, ``watchdog``, ``gap``, ``operator``, ``stimulator_failed``,
    ``ending``) or is a decision, so offline replay can feed a recording's inputs back through
    this same path in the order they happened.
    """

    def __init__(self, protocol: Protocol, stimulator: Stimulator, outlets, commands,
                 event: Callable, max_step_s: float, sfreq: float, pipeline,
                 clock: Callable[[], float] = pylsl.local_clock,
                 prior: DoseTotals | None = None,
                 settings: GovernorSettings | None = None) -> None:  # fmt: skip
        self.protocol, self.stimulator, self.outlets = protocol, stimulator, outlets
        self.clock = clock
        self.commands, self._event = commands, event
        # the site limits in force (bci.safety.site) and the participant's 24 h dose (ledger)
        self.governor = Governor(
            settings or protocol.stimulator.governor_settings(protocol.safety.stop_ramp_s,
                                                              max_step_s),
            prior=prior,
        )
        self.policy = build_policy(protocol)
        self.sfreq = sfreq
        self.trigger: PhaseTrigger | None = None
        self.phase_weights: np.ndarray | None = None
        """Spatial weights of the trigger's 1-D signal over the picks."""
        if protocol.controller.kind == "phase":
            self.trigger, self.phase_weights = build_trigger(protocol, sfreq, pipeline)
        self.biomarker_scale = math.nan
        """Median band power of the baseline block (biomarker input)."""
        self.failed: str | None = None
        """Why the stimulator failed; nothing is written to it after that."""
        self.pulse_latency_ms = FloatLog()
        """Newest sample → write of every pulse fired, ms."""
        self.stop_requested: str | None = None
        """Who asked to end the session (an operator, a signal); the engine then ends it."""
        self.paused: str | None = None
        """Who paused the session (the output held at zero, the timeline still)."""
        self.resume_requested: str | None = None
        """Who asked to resume; the engine resumes its timeline, then :meth:`resume`."""
        self.nonfinite_at = -math.inf
        """When the decoder last gave a non-finite output (the trip lifts after a finite one)."""
        self.monitor_problems: dict[str, str] = {}
        """What the session's supervisor reported (``monitor`` facts), by what it watches."""
        self._phase = None
        self._n_safety_events = 0
        self._next_telemetry = -math.inf

    # writing ---------------------------------------------------------------------------------
    def write(self, sample_time: float, *, origin: str, decided_at: float, pulse: bool = False,
              command: GovernedCommand | None = None) -> StimCommand | None:  # fmt: skip
        """Write the governor's output now as one command, publish and record it.

        ``origin``: one of ``STIM_ORIGINS``; ``decided_at``: the clock the governor computed it
        at; ``pulse``: fire, if the governor approved a pulse; ``command``: one the governor
        made otherwise (its :meth:`~Governor.zero_now`).
        """
        if self.failed:
            return None
        command = command or self.governor.command(pulse)
        try:
            written = self.stimulator.write(command, sample_time)
        except StimulatorError as err:
            self.fail(err)
            raise
        self.commands.append(written)
        self.outlets.stimulation(written, decided_at, origin)
        return written

    def fail(self, err: Exception) -> None:
        """The stimulator failed: latch the emergency stop, tell the device to stop (zero,
        disarm) if it still listens, write nothing more to it."""
        if self.failed is not None:
            return
        self.failed = str(err)
        now = self.clock()
        self.governor.estop(f"stimulator failed: {err}", now)
        self._event("stimulator_failed", now, error=self.failed)
        try:
            self.stimulator.stop()
        except StimulatorError as stop_error:  # the device's own watchdog is what is left
            self._event("error", now, error=f"stopping the failed stimulator: {stop_error}")
        self.publish_safety_events()

    def hold_safe(self, now: float, sample_time: float) -> None:
        """While the governor holds (a trip, a rest block, the E-stop), follow its ramp."""
        amplitude = self.governor.tick(now)
        last = self.stimulator.last
        if last is not None and last.amplitude != amplitude:
            self.write(sample_time, origin="hold", decided_at=now)
        self.publish_safety_events()

    # the inputs that change what the governor allows -----------------------------------------
    def start_block(self, kind: str, stimulate: bool, now: float, stalled: bool) -> None:
        """A block starts: a stimulating closed-loop block lifts the previous block's hold (an
        input still stalled trips again at once); any other block holds the output at zero."""
        if kind == "closed_loop":
            self.reset_policy(new_block=True)
        if kind == "closed_loop" and stimulate:
            self.governor.recover(now)
            if stalled:  # a watchdog trip, lifted when the input resumes
                self.governor.trip("input stall", now)
        else:
            self.governor.trip(f"{kind} block", now, kind="hold")

    def watchdog_trip(self, reason: str, now: float) -> None:
        """The watchdog saw an input stall or a silent decoder: never rise, ramp to zero."""
        self.governor.trip(reason, now)
        self._event("watchdog", now, action="trip", reason=reason)

    def watchdog_recover(self, now: float) -> None:
        """The watchdog's cause is gone: lift its trip; the policy starts over from the output."""
        self._event("watchdog", now, action="recover")
        self.governor.recover(now)
        self.reset_policy(self.governor.amplitude)

    def pause(self, who: str, now: float) -> None:
        """The operator paused the session: ramp to zero and hold until :meth:`resume`."""
        self.paused = who
        self.governor.trip(f"paused by {who}", now, kind="hold")
        self._event("operator", now, cmd="pause", who=who)
        self.publish_safety_events()

    def resume(self, who: str, now: float, kind: str, stimulate: bool, stalled: bool) -> None:
        """The operator resumed: the current block (``kind``, ``stimulate``) starts over from
        here, as :meth:`start_block` does."""
        self.paused = self.resume_requested = None
        self._event("operator", now, cmd="resume", who=who, block=kind, stimulate=stimulate,
                    stalled=stalled)  # fmt: skip
        self.start_block(kind, stimulate, now, stalled)
        self.publish_safety_events()

    def gap(self, now: float, **detail) -> None:
        """Samples went missing: the policy starts over from the governor's output."""
        self._event("gap", now, **detail)
        self.reset_policy(self.governor.amplitude)

    def decide(self, row: np.ndarray, newest: float, stimulate: bool) -> StimCommand | None:
        """One decision of an amplitude policy (a probability row or a biomarker row); returns
        the command written, or None (the phase path writes only changes)."""
        now = self.clock()
        if self.policy is None:  # phase: the amplitude is a setting, pulses come from the trigger
            requested = self.protocol.controller.amplitude if stimulate else 0.0
        elif not np.isfinite(row).all():
            self.nonfinite_at = now
            self.governor.trip(NONFINITE, now)
            requested = 0.0
        else:
            requested = self.policy(row, newest) if stimulate else 0.0
        allowed = self.governor.request(requested, now)
        last = self.stimulator.last
        command = None
        if self.policy is not None or last is None or last.amplitude != allowed:
            command = self.write(newest, origin="decision", decided_at=now)
        self.publish_safety_events()
        return command

    def reset_policy(self, amplitude: float | None = None, new_block: bool = False) -> None:
        """Start the policy over from ``amplitude`` (a recovery, a gap: the governor's output;
        a new block: the floor). The phase trigger's refractory period survives all but a new
        block."""
        if self.policy is not None:
            self.policy.reset(amplitude)
        if self.trigger is not None and new_block:
            self.trigger.reset()
        self._phase = None

    # what the controller reads when it is not the decoder -----------------------------------
    def calibrate(self, window: np.ndarray, n_window: int, hop: int, now: float,
                  sample_time: float) -> None:  # fmt: skip
        """Set the biomarker's reference (median band power over decision windows) or the phase
        trigger's amplitude gate from the baseline block's preprocessed picks (``window``, its
        newest sample at ``sample_time``)."""
        if self.trigger is not None:
            detail = {"phase_gate": self.trigger.calibrate(window @ self.phase_weights)}
        else:
            power = [np.mean(window[end - n_window : end] ** 2)
                     for end in range(n_window, len(window) + 1, hop)]  # fmt: skip
            scale = float(np.median(power)) if power else math.nan
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(
                    f"the baseline block gave no usable band power on "
                    f"{self.protocol.preprocessing.picks} ({len(window)} samples, median "
                    f"{scale:.3g}): check those channels are connected and lengthen the baseline"
                )
            self.biomarker_scale = scale
            detail = {"biomarker_median": scale}
        self._event("baseline", now, samples=len(window), sample_time=sample_time,
                    seconds=round(len(window) / self.sfreq, 2), **detail)  # fmt: skip

    def biomarker(self, window: np.ndarray) -> float:
        """Band power of a preprocessed window relative to the baseline median."""
        return float(np.mean(window**2)) / self.biomarker_scale

    def phase_update(self, window: np.ndarray, newest: float) -> None:
        """Read the newest window of the picks, shape (n_samples, n_picks)."""
        self._phase = self.trigger(window @ self.phase_weights, newest)

    def phase_tick(self, now: float, newest_sample: float, stimulate: bool) -> None:
        """Fire when the predicted target phase is due (every loop iteration)."""
        decision = self._phase
        if decision is None or not stimulate or not self.trigger.should_fire(decision, now):
            return
        # one attempt per crossing: the refractory period starts at every attempt, delivered or
        # refused (governor, device still charging), so the next chunk does not retry it
        self._phase = None
        self.trigger.fired(now)
        now = self.clock()  # the pulse interval counts to the write, not the iteration
        self.governor.request(self.protocol.controller.amplitude, now)
        fire = self.governor.request_pulse(now)
        command = self.write(newest_sample, origin="pulse", decided_at=now, pulse=fire)
        if command is not None and command.pulses:
            self.pulse_latency_ms.append((command.write_time - newest_sample) * 1e3)
        self.publish_safety_events()

    # safety events, telemetry, operator commands ---------------------------------------------
    def publish_safety_events(self) -> None:
        """Log, publish and record the governor's new events."""
        fresh = self.governor.state.events[self._n_safety_events :]
        for event in fresh:
            self._event(f"safety.{event.kind}", event.time, detail=event.detail)
            # clamps come at the decision rate while a ramp is limited: debug only
            level = logging.DEBUG if event.kind in ("clamp", "hold", "recover") else logging.WARNING
            _log.log(level, "safety %s: %s", event.kind, event.detail)
        self._n_safety_events += len(fresh)

    def poll(self, now: float) -> None:
        """Check the device (a driver's keep-alive may have failed) and publish telemetry."""
        if self.failed:
            return
        try:
            self.stimulator.poll()
        except StimulatorError as err:
            self.fail(err)
            raise
        if now >= self._next_telemetry:
            self._next_telemetry = now + _TELEMETRY_EVERY_S
            telemetry = self.stimulator.telemetry()
            if telemetry:
                self._event("telemetry", now, device=telemetry)

    def estop(self, who: str, now: float, sample_time: float, write: bool = True,
              reason: str | None = None) -> None:  # fmt: skip
        """Emergency stop: zero (TMS: disarm) now, latched until an operator re-arms
        (``write=False``: the governor only; offline replay writes what the session wrote;
        ``reason``: why, when it is not an operator's act, e.g. the control channel failed)."""
        why = f": {reason}" if reason else ""
        self.governor.estop(f"emergency stop by {who}{why}", now)
        self._event("operator", now, cmd="estop", who=who, **({"reason": reason} if reason else {}))
        self.reset_policy(0.0)
        last = self.stimulator.last
        if write and (last is None or last.amplitude != 0.0):
            self.write(sample_time, origin="estop", decided_at=now)
        self.publish_safety_events()

    def rearm(self, who: str, now: float) -> bool:
        """Lift the emergency stop (the operator confirmed); True if one was latched."""
        self._event("operator", now, cmd="rearm", who=who)
        rearmed = self.governor.rearm(now, who)
        self.reset_policy(0.0)
        self.publish_safety_events()
        return rearmed

    def serve(self, inbox: ControlInbox, now: float, sample_time: float,
              status: Callable[[], dict]) -> None:  # fmt: skip
        """Answer the operator commands waiting in ``inbox``. A command whose sender gave up
        waiting is dropped, except an emergency stop, which is always carried out."""
        if inbox.empty():  # the common case, every loop iteration
            return
        for command, future in inbox.drain():
            who = str(command.get("who", "operator"))
            cmd = command["cmd"]
            if cmd == "fact":  # from a supervisor thread of this process, never the network
                self.fact(command, now)
                if future.set_running_or_notify_cancel():
                    future.set_result({"ok": True})
                continue
            if not future.set_running_or_notify_cancel():
                if cmd == "estop":
                    self.estop(who, now, sample_time, reason=command.get("reason"))
                continue
            if cmd == "estop":
                self.estop(who, now, sample_time, reason=command.get("reason"))
                reply = {"ok": True, "estop": self.governor.state.estop}
            elif cmd == "rearm" and command.get("confirm") is not True:
                reply = {"ok": False, "error": "re-arming needs an explicit confirmation: send "
                         "\"confirm\": true (bci control rearm --confirm)"}  # fmt: skip
            elif cmd == "rearm":
                if self.failed:
                    reply = {"ok": False, "error": f"the stimulator failed ({self.failed}); "
                             "it cannot be re-armed in this session"}  # fmt: skip
                else:
                    reply = {"ok": True, "rearmed": self.rearm(who, now)}
            elif cmd == "stop":
                self.stop_requested = who
                reply = {"ok": True, "stopping": True}
            elif cmd == "pause":
                if not self.paused:
                    self.pause(who, now)
                reply = {"ok": True, "paused": True}
            elif cmd == "resume":
                if self.paused:
                    self.resume_requested = who
                reply = {"ok": True, "paused": False}
            elif cmd == "note":
                text = str(command.get("text", "")).strip()
                if text:
                    self.outlets.session_info("note", text=text, who=who)
                reply = {"ok": bool(text)} if text else \
                    {"ok": False, "error": 'a note needs "text"'}  # fmt: skip
            else:
                reply = {"ok": True, **status(), **self.status()}
            future.set_result(reply)

    def fact(self, fact: dict, now: float) -> None:
        """Record what a supervisor saw, and act on it: a broken recording (recorder gone, disk
        full or nearly; unless the protocol says ``recording.required = false``) or a dose
        ledger that cannot be written ramps the output to zero and latches it for the
        session."""
        kind, detail = fact["fact"], {k: v for k, v in fact.items() if k not in ("cmd", "fact")}
        self._event(kind, now, **detail)
        if kind != "monitor":
            return
        process, error = detail["process"], detail["error"]
        self.monitor_problems.setdefault(process, error)
        if process == "recorder" and self.protocol.recording.required:
            self.governor.limit(f"recording stopped: {error}", now)
        elif process in ("ledger", "supervisor"):  # a dose unrecorded, or nothing watching
            self.governor.limit(f"{process} failing: {error}", now)
        else:
            return
        self.reset_policy(0.0)
        self.publish_safety_events()

    def status(self) -> dict:
        """The stimulation state an operator needs at a glance."""
        state = self.governor.state
        return {
            "amplitude": state.amplitude, "estop": state.estop, "tripped": state.tripped,
            "limit": state.latched, "pulses": self.stimulator.n_pulses,
            "charge_mC": state.charge_mc,
            "stimulator_failed": self.failed,
        }  # fmt: skip

    def ramp_to_zero(self, wait: Callable[[float], object], sample_time: Callable[[], float],
                     inbox: ControlInbox | None = None):  # fmt: skip
        """End of session: follow the governor's stop ramp down to zero, then write zero. If
        the governor fails on the way, the zero is written at once (and recorded) before the
        error goes on. Commands arriving in ``inbox`` meanwhile are served: an emergency stop
        cuts the ramp short."""
        now = self.clock()
        self._event("ending", now)
        deadline = now + self.protocol.safety.stop_ramp_s
        try:
            if self.governor.failure is None:
                self.governor.trip("session end", now, kind="hold")
                while self.governor.amplitude and now < deadline and not self.failed:
                    if inbox is not None:
                        self.serve(inbox, now, sample_time(), dict)
                    self.hold_safe(now, sample_time())
                    wait(0.01)  # the session is over: nothing else to serve
                    now = self.clock()
        finally:
            if not self.failed:
                self.write(sample_time(), origin="end", decided_at=now,
                           command=self.governor.zero_now(now))  # fmt: skip
            self.publish_safety_events()
