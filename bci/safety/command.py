"""The one kind of command a stimulator driver accepts: made by a governor, and only by one.

A :class:`GovernedCommand` cannot be built by calling its class (nor copied with
``dataclasses.replace``): it is born only inside :func:`_issue`, which the governor calls. Each
command also carries its governor's identity and a sequence number, and this module remembers
the last command each governor issued: a driver refuses a command from another governor than
its session's, and one that is not the very object its governor issued last (a stale one kept
and written again, or an altered copy).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from dataclasses import dataclass

_ISSUING = threading.local()
"""Set while :func:`_issue` builds a command: the only time one may be born."""
_LATEST: dict[int, GovernedCommand] = {}
"""The last command each governor issued, by issuer."""

_ISSUERS = itertools.count(1)


def new_issuer_id() -> int:
    """A process-unique number naming one governor (the commands it issues carry it)."""
    return next(_ISSUERS)


@dataclass(frozen=True)
class GovernedCommand:
    """What a governor allowed at one moment: the only thing :meth:`Stimulator.write` takes.

    Built by :meth:`Governor.command` (and :meth:`Governor.zero_now`); calling the class
    directly raises ``TypeError``.
    """

    amplitude: float
    """mA (tES, pulse trains; signed for tDCS) or %MSO (TMS)."""
    frequency_hz: float
    """tACS / pulse-train frequency, Hz (0 while the output is off)."""
    pulses: int
    """1 when the governor approved a pulse for this command, else 0."""
    decided_at: float
    """Local-clock time the governor decided it, s."""
    issuer: int
    """The governor that issued it (:func:`new_issuer_id`)."""
    seq: int
    """Its place among that governor's commands, from 1."""

    def __post_init__(self) -> None:
        if not getattr(_ISSUING, "active", False):
            raise TypeError(
                "a GovernedCommand is made by the safety governor only (Governor.command()); "
                "nothing else may reach a stimulator"
            )
        if not (math.isfinite(self.amplitude) and math.isfinite(self.frequency_hz)):
            raise ValueError(f"a governed command must be finite, got {self!r}")


def _issue(amplitude: float, frequency_hz: float, pulses: int, decided_at: float, issuer: int,
          seq: int) -> GovernedCommand:  # fmt: skip
    """Issue a command: the governor's own use (tests of drivers use it to stand in for one)."""
    _ISSUING.active = True
    try:
        command = GovernedCommand(float(amplitude), float(frequency_hz), int(pulses),
                                  float(decided_at), issuer, seq)  # fmt: skip
    finally:
        _ISSUING.active = False
    _LATEST[issuer] = command
    return command


def is_latest(command: GovernedCommand) -> bool:
    """Whether ``command`` is the very object its governor issued last (not a stale one, not
    an altered copy)."""
    return _LATEST.get(command.issuer) is command


def fail_safe(method):
    """Decorate a governor method: if it raises, the governor has failed. The output it allows
    drops to zero at once and stays latched there (:attr:`CommandIssuer.failure` says why), and
    the error goes on to the caller, which writes :meth:`CommandIssuer.zero_now`."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as err:
            self._failed(f"{method.__name__}: {type(err).__name__}: {err}")
            raise

    return guarded


class CommandIssuer:
    """The governor's side of :class:`GovernedCommand`: it seals what it allowed, numbered.

    Mixed into :class:`~bci.safety.governor.Governor`, which keeps ``state.amplitude``,
    ``state.time``, ``state.latched`` and ``settings.frequency_hz``.
    """

    failure: str | None = None
    """Why the governor failed (one of its own methods raised); the output is held at zero."""

    def _init_issuer(self) -> None:
        self._issuer = new_issuer_id()
        self._seq = 0
        self._pulse_granted_at: float | None = None
        """When :meth:`request_pulse` approved a pulse not yet put in a command."""

    def _grant_pulse(self, time: float) -> None:
        self._pulse_granted_at = time

    def _make(self, amplitude: float, frequency_hz: float, pulses: int,
              decided_at: float) -> GovernedCommand:  # fmt: skip
        self._seq += 1
        return _issue(amplitude, frequency_hz, pulses, decided_at, self._issuer, self._seq)

    def command(self, pulse: bool = False) -> GovernedCommand:
        """The output allowed now, as the command a stimulator takes: the amplitude last
        allowed, the session's frequency while it is on, and a pulse only when ``pulse`` is
        asked and :meth:`request_pulse` approved one since the last command (used up here)."""
        amplitude = self.state.amplitude
        granted, self._pulse_granted_at = self._pulse_granted_at, None
        fire = pulse and granted is not None
        decided_at = granted if fire else (self.state.time or 0.0)
        frequency = self.settings.frequency_hz if amplitude else 0.0
        return self._make(amplitude, frequency, int(fire), decided_at)

    def zero_now(self, time: float) -> GovernedCommand:
        """A zero command now, whatever state the governor is in: the session's last command,
        and the last resort when the governor failed. Never raises."""
        self.state.amplitude = 0.0
        self._pulse_granted_at = None
        return self._make(0.0, 0.0, 0, time if math.isfinite(time) else 0.0)

    def _failed(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.state.amplitude = 0.0
        self.state.latched = self.state.latched or f"governor failed ({reason})"
