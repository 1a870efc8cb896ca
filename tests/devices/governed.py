"""Sealed commands for driver tests: the tests stand in for the governor (the only maker of
:class:`GovernedCommand` in the product), numbering commands in order as a governor does."""

from __future__ import annotations

import itertools

from bci.safety.command import GovernedCommand, _issue

_SEQ = itertools.count(1)
_CLOCK = itertools.count(0, 10)
TEST_ISSUER = 0
"""The issuer number of these commands (a real governor's is 1 or more)."""


def governed(amplitude: float, frequency_hz: float = 0.0, pulses: int = 0,
             decided_at: float | None = None, issuer: int = TEST_ISSUER) -> GovernedCommand:
    """A sealed command, as a governor would issue it next (pulses 10 s apart by default)."""
    at = float(next(_CLOCK)) if decided_at is None else decided_at
    return _issue(amplitude, frequency_hz, pulses, at, issuer, next(_SEQ))
