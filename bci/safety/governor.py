"""The governor: every stimulator command passes through it, and it can only make them safer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bci.safety.ceilings import HARD_CEILINGS


@dataclass(frozen=True)
class GovernorSettings:
    """Limits the governor enforces; each is capped by the modality's hard ceiling."""

    modality: str
    """tdcs | tacs | tms | pulse_train."""
    max_amplitude: float
    """Session ceiling on |amplitude| (mA, or %MSO for TMS)."""
    max_slew_per_s: float
    """Session ceiling on the amplitude change rate, unit/s."""
    stop_ramp_s: float = 0.5
    """After a trip the output ramps from where it was to zero within this time, s (≤ 1)."""
    max_step_s: float = 0.1
    """The slew limit counts at most this much time since the previous command, s, so a silence
    (a stall, a slow decoder) never turns into one large step. Set it near the decision hop."""

    def __post_init__(self) -> None:
        if self.modality not in HARD_CEILINGS:
            raise ValueError(
                f"modality must be one of {sorted(HARD_CEILINGS)}, got {self.modality!r}."
            )
        hard = HARD_CEILINGS[self.modality]
        if not 0 <= self.max_amplitude <= hard.max_amplitude:
            raise ValueError(
                f"max_amplitude must be within 0..{hard.max_amplitude} {hard.unit} for "
                f"{self.modality}, got {self.max_amplitude}."
            )
        if not 0 < self.max_slew_per_s <= hard.max_slew_per_s:
            raise ValueError(
                f"max_slew_per_s must be within (0, {hard.max_slew_per_s}] for {self.modality}, "
                f"got {self.max_slew_per_s}."
            )
        if not 0 < self.stop_ramp_s <= 1.0:
            raise ValueError(f"stop_ramp_s must be within (0, 1] s, got {self.stop_ramp_s}.")
        if not 0 < self.max_step_s <= 1.0:
            raise ValueError(f"max_step_s must be within (0, 1] s, got {self.max_step_s}.")


@dataclass(frozen=True)
class SafetyEvent:
    """A clamp, refusal, trip or recovery, for the events stream and the summary."""

    time: float
    kind: str
    """clamp | refuse | trip | hold | recover."""
    detail: str


@dataclass
class GovernorState:
    """What the governor allowed so far, and what it integrated."""

    amplitude: float = 0.0
    time: float | None = None
    tripped: str | None = None
    charge_mc: float = 0.0
    on_time_s: float = 0.0
    max_abs_amplitude: float = 0.0
    n_clamped: int = 0
    n_refused: int = 0
    events: list[SafetyEvent] = field(default_factory=list)


class Governor:
    """Clamps amplitude and slew, trips on non-finite requests, ramps to zero when tripped.

    A trip (watchdog: stalled input or silent decoder) holds the output at or below where it was
    and ramps it to zero within ``stop_ramp_s``; :meth:`recover` lifts it, after which the output
    can rise again only through the slew limit.

    Parameters
    ----------
    settings : GovernorSettings
    """

    def __init__(self, settings: GovernorSettings) -> None:
        self.settings = settings
        self.state = GovernorState()
        self._trip_amplitude = 0.0

    @property
    def amplitude(self) -> float:
        """The amplitude last allowed."""
        return self.state.amplitude

    @property
    def tripped(self) -> bool:
        """Whether a trip holds the output at zero."""
        return self.state.tripped is not None

    def _event(self, time: float, kind: str, detail: str) -> None:
        self.state.events.append(SafetyEvent(time, kind, detail))

    def _advance(self, amplitude: float, time: float) -> float:
        state = self.state
        if state.time is not None and time > state.time:
            dt = time - state.time
            # trapezoid: charge in mC = mA · s
            state.charge_mc += 0.5 * (abs(state.amplitude) + abs(amplitude)) * dt
            if state.amplitude or amplitude:
                state.on_time_s += dt
        state.amplitude = amplitude
        state.time = time if state.time is None else max(time, state.time)
        state.max_abs_amplitude = max(state.max_abs_amplitude, abs(amplitude))
        return amplitude

    def request(self, amplitude: float, time: float) -> float:
        """The amplitude allowed for a controller's request at ``time`` (s, local clock).

        A non-finite request is refused and trips the governor: the output ramps to zero.
        """
        if not math.isfinite(time):
            raise ValueError(f"time must be a finite local-clock time, s, got {time!r}.")
        s, state = self.settings, self.state
        if self.tripped:
            return self.tick(time)
        if not math.isfinite(amplitude):
            state.n_refused += 1
            self._event(time, "refuse", f"non-finite request {amplitude!r}")
            self.trip("non-finite request", time)
            return self.tick(time)
        allowed = min(max(amplitude, -s.max_amplitude), s.max_amplitude)
        # the first request starts from zero; a long silence counts as one step at most
        elapsed = 0.0 if state.time is None else min(max(time - state.time, 0.0), s.max_step_s)
        step = s.max_slew_per_s * elapsed
        allowed = min(max(allowed, state.amplitude - step), state.amplitude + step)
        # differences below 0.1 % of the ceiling are clock jitter between the controller's sample
        # times and our write times, not clamps worth an event
        if abs(allowed - amplitude) > 1e-3 * s.max_amplitude:
            state.n_clamped += 1
            self._event(time, "clamp", f"requested {amplitude:.4g}, allowed {allowed:.4g}")
        return self._advance(allowed, time)

    def trip(self, reason: str, time: float, kind: str = "trip") -> None:
        """Start ramping to zero and refuse any rise until :meth:`recover`.

        ``kind`` is ``trip`` for faults (watchdog, errors) and ``hold`` for planned ramp-downs
        (a block without stimulation, the session's end).
        """
        if not self.tripped:
            self.state.tripped = reason
            self._trip_amplitude = self.state.amplitude
            self._trip_time = time
            self._event(time, kind, reason)

    def recover(self, time: float) -> None:
        """Lift a watchdog trip once its cause is gone."""
        if self.tripped:
            self.tick(time)  # the slew limit counts from here, not from the last command
            self._event(time, "recover", f"{self.state.tripped} cleared")
            self.state.tripped = None

    def tick(self, time: float) -> float:
        """The output at ``time`` while tripped: a linear ramp to zero over ``stop_ramp_s``."""
        if not self.tripped:
            return self.state.amplitude
        left = 1.0 - (time - self._trip_time) / self.settings.stop_ramp_s
        ramped = self._trip_amplitude * min(max(left, 0.0), 1.0)
        # never above where the output already is, whatever the clock did
        if abs(ramped) > abs(self.state.amplitude):
            ramped = self.state.amplitude
        return self._advance(ramped, time)
