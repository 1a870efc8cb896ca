"""The governor: every stimulator command passes through it, and it can only make them safer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bci.safety.ceilings import HARD_CEILINGS, max_pulse_amplitude_ma
from bci.safety.command import CommandIssuer, fail_safe
from bci.safety.dose import MAX_HOLD_S, DoseTotals, daily_remaining, dose_refusal, pulse_refusal


@dataclass(frozen=True)
class GovernorSettings:
    """Limits the governor enforces; each is capped by the modality's hard ceiling, and a
    limit left at None takes the hard ceiling."""

    modality: str
    """tdcs | tacs | tms | pulse_train."""
    max_amplitude: float
    """Session ceiling on |amplitude| (mA, or %MSO for TMS)."""
    max_slew_per_s: float = 1.0
    """Session ceiling on the amplitude's rate of change, unit/s (TMS intensity: not limited)."""
    stop_ramp_s: float = 0.5
    """After a trip the output ramps from where it was to zero within this time, s (≤ 1)."""
    max_step_s: float = 0.1
    """The slew limit counts at most this much time since the previous command, s, so a silence
    (a stall, a slow decoder) never turns into one large step. Set it near the decision hop."""
    max_session_s: float | None = None
    """Longest stimulation (output on) this session, s (tDCS: ≤ 2400)."""
    max_charge_mc: float | None = None
    """Largest total charge this session, mC (tDCS: ≤ 7200)."""
    frequency_hz: float = 0.0
    """The session's stimulation frequency, Hz (tACS 0.1–150, pulse trains 2–255, else 0)."""
    min_pulse_interval_s: float | None = None
    """Shortest time between two pulses, s (TMS: ≥ 1)."""
    max_pulses: int | None = None
    """Most pulses this session (None: no limit beyond the rate)."""
    pulse_width_us: float | None = None
    """Pulse trains: width of each phase, µs (10–450)."""
    electrode_area_cm2: float | None = None
    """Pulse trains: the stimulating contact's area, cm² (sets the charge-density bound)."""
    max_daily_s: float | None = None
    """Longest stimulation for the participant over any rolling 24 h, this session included, s
    (tDCS: ≤ 2400)."""
    max_daily_charge_mc: float | None = None
    """Largest total charge for the participant over any rolling 24 h, mC (tDCS: ≤ 7200)."""
    max_daily_pulses: float | None = None
    """Most pulses for the participant over any rolling 24 h (a count; inf: no limit)."""

    def __post_init__(self) -> None:
        if self.modality not in HARD_CEILINGS:
            raise ValueError(
                f"modality must be one of {sorted(HARD_CEILINGS)}, got {self.modality!r}."
            )
        hard = HARD_CEILINGS[self.modality]
        _within("max_amplitude", self.max_amplitude, 0, hard.max_amplitude, hard.unit)
        if not 0 < self.max_slew_per_s <= hard.max_slew_per_s:
            raise ValueError(
                f"max_slew_per_s must be within (0, {hard.max_slew_per_s}] for {self.modality}, "
                f"got {self.max_slew_per_s}."
            )
        _within("stop_ramp_s", self.stop_ramp_s, 1e-3, 1.0, "s")
        _within("max_step_s", self.max_step_s, 1e-3, 1.0, "s")
        defaults = {
            "max_session_s": (hard.max_session_s, "s"),
            "max_charge_mc": (hard.max_charge_mc, "mC"),
            "min_pulse_interval_s": (1.0 / hard.max_pulse_rate_hz, "s"),
            "max_daily_s": (hard.max_daily_s, "s"),
            "max_daily_charge_mc": (hard.max_daily_charge_mc, "mC"),
            "max_daily_pulses": (hard.max_daily_pulses, "pulses"),
        }
        for name, (ceiling, unit) in defaults.items():
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, ceiling)
            elif name == "min_pulse_interval_s":
                _within(name, value, ceiling, math.inf, unit)
            else:
                _within(name, value, 0, ceiling, unit)
        if hard.frequency_hz is None:
            if self.frequency_hz != 0:
                raise ValueError(f"frequency_hz must be 0 for {self.modality}, got "
                                 f"{self.frequency_hz}.")  # fmt: skip
        else:
            _within("frequency_hz", self.frequency_hz, *hard.frequency_hz, "Hz")
        if hard.pulse_width_us is not None:
            if self.pulse_width_us is None or self.electrode_area_cm2 is None:
                raise ValueError(
                    f"{self.modality} needs pulse_width_us and electrode_area_cm2 to bound the "
                    "charge density."
                )
            _within("pulse_width_us", self.pulse_width_us, *hard.pulse_width_us, "µs")
            _within("electrode_area_cm2", self.electrode_area_cm2, 1e-4, 100.0, "cm²")
            bound = max_pulse_amplitude_ma(self.pulse_width_us, self.electrode_area_cm2)
            if self.max_amplitude > bound:
                raise ValueError(
                    f"max_amplitude {self.max_amplitude} mA at {self.pulse_width_us} µs on "
                    f"{self.electrode_area_cm2} cm² exceeds the charge-density ceiling of "
                    f"{hard.max_charge_density_uc_cm2} µC/cm² per phase (at most {bound:.3g} mA)."
                )
        if self.max_pulses is not None and self.max_pulses < 0:
            raise ValueError(f"max_pulses must be >= 0, got {self.max_pulses}.")

    @property
    def signed(self) -> bool:
        """Whether requests may be negative (tDCS polarity)."""
        return HARD_CEILINGS[self.modality].signed

    @property
    def slewed(self) -> bool:
        """Whether the amplitude is slew-limited (TMS intensity is a setting, not a current)."""
        return math.isfinite(HARD_CEILINGS[self.modality].max_slew_per_s)


def _within(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (isinstance(value, int | float) and low <= value <= high):
        raise ValueError(f"{name} must be within {low:g}..{high:g} {unit}, got {value!r}.")


@dataclass(frozen=True)
class SafetyEvent:
    """A clamp, refusal, trip, limit, emergency stop or recovery, for the events stream."""

    time: float
    kind: str
    """clamp | refuse | trip | hold | recover | limit | estop | rearm."""
    detail: str


@dataclass
class GovernorState:
    """What the governor allowed so far, and what it integrated."""

    amplitude: float = 0.0
    time: float | None = None
    """The latest time the governor saw (never goes back), s."""
    slew_from: float | None = None
    """Time the slew limit counts from: the last request or the end of a hold, s. Charge is
    integrated at every tick; the allowed change is not reset by them."""
    tripped: str | None = None
    """A trip or hold that :meth:`Governor.recover` lifts (watchdog, a block at rest)."""
    latched: str | None = None
    """A session dose limit reached; nothing lifts it."""
    estop: str | None = None
    """An emergency stop; only :meth:`Governor.rearm` lifts it."""
    charge_mc: float = 0.0
    on_time_s: float = 0.0
    max_abs_amplitude: float = 0.0
    n_clamped: int = 0
    n_refused: int = 0
    n_pulses: int = 0
    last_pulse_time: float | None = None
    events: list[SafetyEvent] = field(default_factory=list)


class Governor(CommandIssuer):
    """Clamps amplitude and slew, integrates charge and time, rate-limits pulses, trips on
    non-finite requests and watchdogs, latches dose limits and the emergency stop.

    A trip (watchdog: stalled input or silent decoder) holds the output at or below where it was
    and ramps it to zero within ``stop_ramp_s`` (TMS: disarms at once); :meth:`recover` lifts it,
    after which the output can rise again only through the slew limit. A dose limit (charge,
    stimulation time, pulse count: this session's, or the participant's over 24 h counting
    ``prior``) ramps to zero and stays. The emergency stop zeroes at once and stays until
    :meth:`rearm`.

    Parameters
    ----------
    settings : GovernorSettings
    prior : DoseTotals | None
        The participant's dose over the 24 h before this session (the dose ledger's
        ``participant_totals``); None: nothing. ``state`` counts this session only.
    """

    def __init__(self, settings: GovernorSettings, prior: DoseTotals | None = None) -> None:
        if prior is not None and not isinstance(prior, DoseTotals):
            raise TypeError(f"prior must be a DoseTotals or None, got {prior!r}.")
        self.settings = settings
        self.prior = prior or DoseTotals()
        """The participant's dose over the 24 h before this session."""
        self.state = GovernorState()
        s = settings
        self._low = -s.max_amplitude if s.signed else 0.0
        self._current = HARD_CEILINGS[s.modality].unit == "mA"
        """Whether the amplitude is a current whose charge counts (not a TMS intensity)."""
        self._ramp_from: tuple[float, float] | None = None
        """(amplitude, time) where the current ramp to zero started."""
        self._init_issuer()

    @property
    def amplitude(self) -> float:
        """The amplitude last allowed."""
        return self.state.amplitude

    @property
    def tripped(self) -> bool:
        """Whether a trip, a dose limit or the emergency stop holds the output down."""
        s = self.state
        return s.tripped is not None or s.latched is not None or s.estop is not None

    @property
    def estopped(self) -> bool:
        """Whether the emergency stop is latched."""
        return self.state.estop is not None

    @property
    def session_totals(self) -> DoseTotals:
        """This session's dose so far (the dose ledger's writer thread reads it)."""
        state = self.state
        return DoseTotals(state.on_time_s, state.charge_mc, state.n_pulses)

    @property
    def daily_remaining(self) -> DoseTotals:
        """What the participant may still receive within the daily limits (inf: no limit)."""
        return daily_remaining(self.settings, self.prior, self.session_totals)

    def _event(self, time: float, kind: str, detail: str) -> None:
        self.state.events.append(SafetyEvent(time, kind, detail))

    def _integrate(self, time: float) -> float:
        """Advance to ``time``: add the held output's charge and on-time; returns the elapsed
        time (0 when the clock went back)."""
        if not math.isfinite(time):
            raise ValueError(f"time must be a finite local-clock time, s, got {time!r}.")
        state = self.state
        if state.time is None:
            state.time = time
            return 0.0
        elapsed = time - state.time
        if elapsed <= 0:
            return 0.0
        if state.amplitude:
            held = min(elapsed, MAX_HOLD_S)  # the device zeroes a command held longer
            if self._current:
                state.charge_mc += abs(state.amplitude) * held  # mA · s = mC
            state.on_time_s += held
        state.time = time
        return elapsed

    def _set(self, amplitude: float) -> float:
        self.state.amplitude = amplitude
        self.state.max_abs_amplitude = max(self.state.max_abs_amplitude, abs(amplitude))
        return amplitude

    def _dose_reason(self, amplitude: float) -> str | None:
        """Why ``amplitude`` leaves too little charge or time, this session's or the
        participant's today, to hold it and then ramp down; None if it fits."""
        state = self.state
        return dose_refusal(self.settings, self.prior, state.on_time_s, state.charge_mc, amplitude)

    def _check_dose(self, time: float) -> None:
        """Latch the dose limit when the output held now no longer fits the budget."""
        if not self.tripped and (reason := self._dose_reason(self.state.amplitude)):
            self.limit(reason, time)

    def _start_ramp(self, time: float) -> None:
        if self._ramp_from is None:
            self._ramp_from = (self.state.amplitude, time)

    def _ramped(self, time: float) -> float:
        """The output while held: 0 under the emergency stop or for TMS, else a linear ramp
        to zero over ``stop_ramp_s``, never above where the output already is."""
        if self.estopped or not self.settings.slewed or self._ramp_from is None:
            return self._set(0.0)
        start, since = self._ramp_from
        left = min(max(1.0 - (time - since) / self.settings.stop_ramp_s, 0.0), 1.0)
        ramped = start * left
        if abs(ramped) > abs(self.state.amplitude):  # whatever the clock did
            ramped = self.state.amplitude
        return self._set(ramped)

    @fail_safe
    def request(self, amplitude: float, time: float) -> float:
        """The amplitude allowed for a controller's request at ``time`` (s, local clock).

        A non-finite request is refused and trips the governor: the output ramps to zero.
        """
        self._integrate(time)
        s, state = self.settings, self.state
        if self.tripped:
            return self._ramped(time)
        if not math.isfinite(amplitude):
            state.n_refused += 1
            self._event(time, "refuse", f"non-finite request {amplitude!r}")
            self.trip("non-finite request", time)
            return self._ramped(time)
        allowed = min(max(amplitude, self._low), s.max_amplitude)
        if s.slewed:
            # the first request starts from zero; a long silence counts as one step at most
            since = 0.0 if state.slew_from is None else max(time - state.slew_from, 0.0)
            step = s.max_slew_per_s * min(since, s.max_step_s)
            allowed = min(max(allowed, state.amplitude - step), state.amplitude + step)
        if (reason := self._dose_reason(allowed)) is not None:
            return self.limit(reason, time)
        self._slew_from_now(time)
        # differences below 0.1 % of the ceiling are clock jitter between the controller's sample
        # times and our write times, not clamps worth an event
        if abs(allowed - amplitude) > 1e-3 * max(s.max_amplitude, 1e-9):
            state.n_clamped += 1
            self._event(time, "clamp", f"requested {amplitude:.4g}, allowed {allowed:.4g}")
        return self._set(allowed)

    @fail_safe
    def request_pulse(self, time: float) -> bool:
        """Whether a pulse (TMS, or a tACS phase reset) may go out at ``time``; counts it.

        Refused while held, at zero amplitude, sooner than ``min_pulse_interval_s`` after the
        previous pulse (a clock that went back counts as too soon), or past ``max_pulses``.
        """
        self.tick(time)
        s, state = self.settings, self.state
        reason = None
        if self.tripped:
            reason = f"held ({state.estop or state.latched or state.tripped})"
        elif not state.amplitude:
            reason = "output is off"
        elif (
            state.last_pulse_time is not None
            and time - state.last_pulse_time < s.min_pulse_interval_s
        ):
            gap = time - state.last_pulse_time
            reason = f"{gap:.3f} s after the previous pulse; minimum {s.min_pulse_interval_s:g} s"
        elif (limit := pulse_refusal(s, self.prior, state.n_pulses)) is not None:
            self.limit(limit, time)  # this session's max_pulses, or the daily one with prior
            reason = "pulse limit reached"
        if reason is not None:
            state.n_refused += 1
            self._event(time, "refuse", f"pulse refused: {reason}")
            return False
        state.n_pulses += 1
        state.last_pulse_time = time
        self._grant_pulse(time)
        return True

    @fail_safe
    def trip(self, reason: str, time: float, kind: str = "trip") -> float:
        """Start ramping to zero (TMS: disarm) and refuse any rise until :meth:`recover`.

        ``kind`` is ``trip`` for faults (watchdog, errors) and ``hold`` for planned ramp-downs
        (a block without stimulation, the session's end). Returns the output now.
        """
        self._integrate(time)
        if self.state.tripped is None:
            self.state.tripped = reason
            self._start_ramp(time)
            self._event(time, kind, reason)
        return self._ramped(time)

    @fail_safe
    def limit(self, reason: str, time: float) -> float:
        """Latch a session or daily dose limit: ramp to zero and stay there for the session;
        returns the output now."""
        self._integrate(time)
        if self.state.latched is None:
            self.state.latched = reason
            self._start_ramp(time)
            self._event(time, "limit", reason)
        return self._ramped(time)

    def _slew_from_now(self, time: float) -> None:
        """The next rise counts from ``time`` (a request, or the end of a hold), never from a
        time the clock went back to."""
        state = self.state
        state.slew_from = time if state.slew_from is None else max(state.slew_from, time)

    @fail_safe
    def recover(self, time: float) -> None:
        """Lift a trip once its cause is gone (not a dose limit, not the emergency stop)."""
        self.tick(time)
        if self.state.tripped is not None:
            self._event(time, "recover", f"{self.state.tripped} cleared")
            self.state.tripped = None
            if self.state.latched is None and self.state.estop is None:
                self._ramp_from = None
                self._slew_from_now(time)  # the slew limit counts from here
            self._check_dose(time)

    @fail_safe
    def estop(self, reason: str, time: float) -> float:
        """Emergency stop: output to zero now, latched until :meth:`rearm`; returns 0."""
        self._integrate(time)
        if self.state.estop is None:
            self.state.estop = reason
            self._event(time, "estop", reason)
        self._ramp_from = (0.0, time)
        return self._set(0.0)

    @fail_safe
    def rearm(self, time: float, who: str = "operator") -> bool:
        """Lift the emergency stop (an explicit operator action); True if one was latched.
        The output then rises again only through the slew limit, from zero."""
        self.tick(time)
        if self.state.estop is None:
            return False
        self._event(time, "rearm", f"{self.state.estop} cleared by {who}")
        self.state.estop = None
        if self.state.tripped is None and self.state.latched is None:
            self._ramp_from = None
            self._slew_from_now(time)
        return True

    @fail_safe
    def tick(self, time: float) -> float:
        """The output at ``time`` with no new request: the ramp while held, else unchanged."""
        self._integrate(time)
        self._check_dose(time)
        if not self.tripped:
            return self.state.amplitude
        return self._ramped(time)
