"""Dose accounting: session and daily budgets of stimulation time, charge and pulses.

The governor asks these pure functions whether holding an amplitude (and ramping down after it)
still fits the session's limits and the participant's rolling 24 h limits; the dose ledger
(:mod:`bci.safety.ledger`) supplies the participant's totals from before the session.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bci.safety.ceilings import HARD_CEILINGS

if TYPE_CHECKING:
    from bci.safety.governor import GovernorSettings

MAX_HOLD_S = 1.0
"""Longest a stimulator holds a command without hearing from the host: the Magstim disarms after
1 s of silence, the tES protocol's device watchdog zeros the output after 0.5 s, and the engine
writes at least every loop iteration. Charge and time are integrated over at most this much
after each command, and the dose limits keep a reserve of it."""

DAY_S = 86400.0
"""The rolling window of the daily limits, s."""


@dataclass(frozen=True)
class DoseTotals:
    """Stimulation dose: what a session delivered, a participant's rolling 24 h total, or what
    is left of a budget."""

    on_time_s: float = 0.0
    """Time the output was on, s."""
    charge_mc: float = 0.0
    """Total charge ∫|I| dt, mC (0 for TMS, whose amplitude is an intensity)."""
    pulses: float = 0
    """Pulses fired (an integer count; inf in a budget without a pulse limit)."""

    def __post_init__(self) -> None:
        for name in ("on_time_s", "charge_mc", "pulses"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or math.isnan(value) or value < 0:
                raise ValueError(f"DoseTotals.{name} must be a number >= 0, got {value!r}.")

    def __add__(self, other: DoseTotals) -> DoseTotals:
        return DoseTotals(
            self.on_time_s + other.on_time_s,
            self.charge_mc + other.charge_mc,
            self.pulses + other.pulses,
        )

    def minus(self, other: DoseTotals) -> DoseTotals:
        """What is left of this budget after ``other``, never below zero."""
        return DoseTotals(
            max(self.on_time_s - other.on_time_s, 0.0),
            max(self.charge_mc - other.charge_mc, 0.0),
            max(self.pulses - other.pulses, 0),
        )


class DoseLimitError(ValueError):
    """The participant's daily budget leaves nothing for this session: it must not start."""


def daily_limits(settings: GovernorSettings) -> DoseTotals:
    """The daily limits of ``settings`` as one budget."""
    return DoseTotals(settings.max_daily_s, settings.max_daily_charge_mc,
                      settings.max_daily_pulses)  # fmt: skip


def daily_remaining(settings: GovernorSettings, prior: DoseTotals,
                    session: DoseTotals) -> DoseTotals:  # fmt: skip
    """What the participant may still receive today: the daily limits less ``prior`` (the 24 h
    before this session) and ``session`` (this session so far)."""
    return daily_limits(settings).minus(prior + session)


def _reserve_s(settings: GovernorSettings) -> float:
    """Time a command may still run once allowed: held ``MAX_HOLD_S``, then a ramp to zero
    sampled at least every ``MAX_HOLD_S``."""
    return 2 * MAX_HOLD_S + settings.stop_ramp_s


def dose_refusal(settings: GovernorSettings, prior: DoseTotals, on_time_s: float,
                 charge_mc: float, amplitude: float) -> str | None:  # fmt: skip
    """Why holding ``amplitude`` (then ramping down) would break a dose limit; None if it fits.

    ``on_time_s`` (s) and ``charge_mc`` (mC) are this session's so far; ``prior`` the
    participant's 24 h before it. Holding a command costs at most ``MAX_HOLD_S`` of it; a ramp
    to zero sampled by commands at least every ``MAX_HOLD_S`` costs at most ``MAX_HOLD_S`` more
    charge and ``stop_ramp_s + MAX_HOLD_S`` more time. Session limits are checked before the
    participant's daily ones. (Plain floats: the governor asks at every command.)
    """
    if not amplitude:
        return None
    s = settings
    charge = abs(amplitude) * 2 * MAX_HOLD_S
    reserve = _reserve_s(s)
    if on_time_s + reserve > s.max_session_s:
        return (f"session limit reached: stimulation time {on_time_s:.0f} s of "
                f"{s.max_session_s:g} s")  # fmt: skip
    if charge_mc + charge > s.max_charge_mc:
        return (f"session limit reached: charge {charge_mc / 1e3:.3f} C of "
                f"{s.max_charge_mc / 1e3:g} C")  # fmt: skip
    day_s, day_mc = prior.on_time_s + on_time_s, prior.charge_mc + charge_mc
    if day_s + reserve > s.max_daily_s:
        return (f"daily limit reached for the participant: stimulation time {day_s:.0f} s "
                f"in 24 h of {s.max_daily_s:g} s")  # fmt: skip
    if day_mc + charge > s.max_daily_charge_mc:
        return (f"daily limit reached for the participant: charge {day_mc / 1e3:.3f} C "
                f"in 24 h of {s.max_daily_charge_mc / 1e3:g} C")  # fmt: skip
    return None


def pulse_refusal(settings: GovernorSettings, prior: DoseTotals, n_pulses: int) -> str | None:
    """Why one more pulse would break the session's or the participant's daily pulse limit;
    None if it fits."""
    if settings.max_pulses is not None and n_pulses >= settings.max_pulses:
        return f"session limit reached: {n_pulses} pulses"
    if prior.pulses + n_pulses >= settings.max_daily_pulses:
        return (f"daily limit reached for the participant: {prior.pulses + n_pulses:g} pulses "
                f"in 24 h of {settings.max_daily_pulses:g}")  # fmt: skip
    return None


def exhausted(settings: GovernorSettings, prior: DoseTotals) -> list[str]:
    """Which daily budgets ``prior`` leaves too small for any stimulation (empty: it may run).

    Time: less than one command's reserve is left. Charge: none is left (a current modality).
    Pulses: none is left (TMS, which stimulates only with pulses).
    """
    s, spent = settings, []
    if prior.on_time_s + _reserve_s(s) > s.max_daily_s:
        spent.append(f"stimulation time {prior.on_time_s:.0f} s of {s.max_daily_s:g} s")
    if HARD_CEILINGS[s.modality].unit == "mA" and prior.charge_mc >= s.max_daily_charge_mc:
        spent.append(f"charge {prior.charge_mc:.0f} mC of {s.max_daily_charge_mc:g} mC")
    if s.modality == "tms" and prior.pulses >= s.max_daily_pulses:
        spent.append(f"{prior.pulses:g} pulses of {s.max_daily_pulses:g}")
    return spent


def frees_at(settings: GovernorSettings, lines: Iterable[tuple[float, DoseTotals]],
             window_s: float = DAY_S) -> float | None:  # fmt: skip
    """When (wall time, s) enough of the dose in ``lines`` leaves the rolling window for a
    session to stimulate again; None when nothing is exhausted.

    Parameters
    ----------
    settings : GovernorSettings
        The daily limits in force.
    lines : iterable of (float, DoseTotals)
        The participant's dose increments in the window: wall time (s since the epoch) and
        increment, as the ledger holds them.
    window_s : float
        The rolling window, s.
    """
    lines = sorted(lines, key=lambda line: line[0])
    total = DoseTotals()
    for _, delta in lines:
        total = total + delta
    if not exhausted(settings, total):
        return None
    for when, delta in lines:
        total = total.minus(delta)
        if not exhausted(settings, total):
            return when + window_s
    return None  # unreachable: an empty total is never exhausted


def refuse_if_exhausted(settings: GovernorSettings, prior: DoseTotals | None,
                        participant: str = "", free_at: float | None = None) -> None:  # fmt: skip
    """Raise :class:`DoseLimitError` when the participant's 24 h totals leave no budget for this
    session to stimulate at all.

    Parameters
    ----------
    settings : GovernorSettings
        The session's governor settings (their daily limits).
    prior : DoseTotals | None
        The participant's totals over the 24 h before the session (None: no ledger, nothing).
    participant : str
        The participant, named in the message.
    free_at : float | None
        When the budget frees up (wall time, s since the epoch; :func:`frees_at`), if known.
    """
    if prior is None:
        return
    spent = exhausted(settings, prior)
    if not spent:
        return
    who = f"participant {participant!r}" if participant else "the participant"
    message = (f"daily {settings.modality} limit reached for {who}: "
               f"{'; '.join(spent)} in the last 24 h.")  # fmt: skip
    if free_at is not None:
        stamp = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(free_at))
        message += f" The budget frees up at {stamp} (local time)."
    message += " No session may stimulate this participant before then (see bci dose)."
    raise DoseLimitError(message)
