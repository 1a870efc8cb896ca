"""Only the governor's commands reach a stimulator, and a governor that fails zeroes the output
at once, with the zero recorded: sealed commands, the fail-safe wrapper, the end ramp."""

from __future__ import annotations

import threading

import pylsl
import pytest

from bci.engine.control import ControlInbox
from bci.safety.governor import Governor, GovernorSettings
from tests.engine.test_stimulation_path import Path, tacs  # noqa: F401  (the fixture)


def test_the_governor_seals_what_it_allowed_and_numbers_it():
    gov = Governor(GovernorSettings("tacs", 1.0, 1.0, frequency_hz=10.0, max_step_s=1.0))
    assert gov.command().amplitude == 0.0 and gov.command().frequency_hz == 0.0
    gov.request(0.5, 1.0)
    gov.request(0.5, 2.0)
    first, second = gov.command(), gov.command()
    assert (first.amplitude, first.frequency_hz) == (0.5, 10.0)
    assert second.seq == first.seq + 1 and second.issuer == first.issuer
    assert Governor(gov.settings).command().issuer != first.issuer
    # a pulse goes out only once the governor approved it, and only once
    assert gov.command(pulse=True).pulses == 0
    assert gov.request_pulse(3.0)
    fired = gov.command(pulse=True)
    assert fired.pulses == 1 and fired.decided_at == 3.0
    assert gov.command(pulse=True).pulses == 0


def test_a_governor_that_raises_holds_zero_and_says_why(monkeypatch):
    gov = Governor(GovernorSettings("tdcs", 2.0, 1.0, max_step_s=1.0))
    gov.request(1.0, 1.0)
    gov.request(1.0, 2.0)
    assert gov.amplitude > 0

    def broken(time):
        raise ArithmeticError("corrupted state")

    monkeypatch.setattr(gov, "_integrate", broken)
    with pytest.raises(ArithmeticError):
        gov.request(1.5, 3.0)
    assert gov.amplitude == 0.0 and gov.tripped
    assert "request: ArithmeticError: corrupted state" in gov.failure
    assert "governor failed" in gov.state.latched
    zero = gov.zero_now(3.0)
    assert zero.amplitude == 0.0 and zero.frequency_hz == 0.0


def test_a_governor_failing_in_the_end_ramp_writes_the_zero_at_once(tacs, monkeypatch):  # noqa: F811
    p = tacs
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.2, timeout_s=2.0)

    def broken(*args, **kwargs):
        raise RuntimeError("governor bug")

    monkeypatch.setattr(p.path.governor, "_ramped", broken)
    start = pylsl.local_clock()
    with pytest.raises(RuntimeError, match="governor bug"):
        p.path.ramp_to_zero(threading.Event().wait, pylsl.local_clock)
    # no ramp: one command, zero, recorded and published, right away
    after = [c for c in p.commands if c.write_time >= start]
    assert [c.amplitude for c in after] == [0.0]
    assert after[0].write_time - start < 0.05
    assert p.outlets.commands[-1] is after[0] and p.stimulator.output[0] == 0.0
    assert p.path.governor.failure is not None


def test_an_emergency_stop_during_the_end_ramp_cuts_it_short(tacs):  # noqa: F811
    p = tacs
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.2, timeout_s=2.0)
    inbox = ControlInbox()
    inbox.post({"cmd": "estop", "who": "test"})
    start = pylsl.local_clock()
    p.path.ramp_to_zero(threading.Event().wait, pylsl.local_clock, inbox)
    after = [c for c in p.commands if c.write_time >= start]
    # alpha_phase_tacs ramps over 1 s; the stop zeroes at its first step instead
    assert after[-1].write_time - start < 0.1 and all(c.amplitude == 0.0 for c in after[-2:])
    assert any(e["kind"] == "operator" and e["cmd"] == "estop" for e in p.events)
