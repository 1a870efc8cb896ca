"""The engine's stimulation path on its own: controller → governor → stimulator, the operator's
commands through the control inbox, and a stimulator that fails mid-session. No LSL: a real
simulated stimulator, a real tES driver on a pty emulator, a list for the published commands."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import numpy as np
import pylsl
import pytest

from bci.control.class_map import ClassMapController
from bci.control.dual_threshold import DualThresholdController
from bci.control.proportional import ProportionalController
from bci.engine.control import ControlInbox
from bci.engine.controllers import build_policy
from bci.engine.preprocess import eeg_pipeline
from bci.engine.stimulation import StimulationPath
from bci.protocol import load_protocol
from devices.emulators.tes import TesEmulator
from devices.stimulators import SimulatedStimulator, StimulatorError
from devices.stimulators.tes import TesStimulator
from tests.conftest import wait_for

SFREQ = 1000.0
"""alpha_phase_tacs' EEG rate, Hz."""
MAX_STEP_S = 0.075
"""The governor's longest slew step, s (the engine passes 1.5 × the 50 ms hop)."""
SLEW_TOL = 1e-6
"""Float slack on slew bounds, mA."""


class PublishedCommands:
    """The one method of the session outlets the path uses; keeps what it was given."""

    def __init__(self) -> None:
        self.commands: list = []

    def stimulation(self, command, decided_at: float, origin: str) -> None:
        self.commands.append(command)


class Path:
    """A stimulation path with its record: commands written, commands published, events."""

    def __init__(self, protocol, stimulator) -> None:
        self.stimulator = stimulator
        self.outlets = PublishedCommands()
        self.commands: list = []
        self.events: list[dict] = []
        pipeline = eeg_pipeline(protocol.preprocessing, protocol.preprocessing.picks, SFREQ)
        self.path = StimulationPath(protocol, stimulator, self.outlets, self.commands,
                                    self._event, max_step_s=MAX_STEP_S, sfreq=SFREQ,
                                    pipeline=pipeline)  # fmt: skip

    def _event(self, kind: str, time: float, **detail) -> None:
        self.events.append({"kind": kind, "time": time, **detail})

    def kinds(self) -> list[str]:
        return [event["kind"] for event in self.events]

    def decide_until(self, condition, timeout_s: float) -> bool:
        """Decide every 5 ms (the engine decides every hop) until ``condition()``."""
        row = np.array([0.0])  # what the phase controller's decide() reads is not used

        def step() -> bool:
            self.path.decide(row, pylsl.local_clock(), stimulate=True)
            return condition()

        return wait_for(step, timeout_s)

    def serve(self, command: dict, status: dict | None = None) -> dict:
        """Post one operator command, let the path answer it, return the reply."""
        inbox = ControlInbox()
        future = inbox.post(command)
        now = pylsl.local_clock()
        self.path.serve(inbox, now, now, lambda: status or {})
        assert future.done(), f"{command} was not answered in one serve()"
        return future.result(timeout=0)


@pytest.fixture
def tacs() -> Iterator[Path]:
    """alpha_phase_tacs (1 mA, 0.5 mA/s) on a started simulated stimulator."""
    protocol, _ = load_protocol("alpha_phase_tacs", [])
    stimulator = SimulatedStimulator("tacs")
    stimulator.connect()
    stimulator.start()
    yield Path(protocol, stimulator)
    stimulator.disconnect()


@pytest.fixture
def tes() -> Iterator[tuple[Path, TesEmulator]]:
    """alpha_phase_tacs on a real tES driver talking to the emulator over a pty."""
    with TesEmulator() as emulator:
        overrides = ["stimulator.kind=tes", f"stimulator.port={emulator.port}",
                     "session.participant=test-tes"]  # fmt: skip
        protocol, _ = load_protocol("alpha_phase_tacs", overrides)
        stimulator = TesStimulator(emulator.port, "tacs")
        stimulator.connect()
        stimulator.start()
        try:
            yield Path(protocol, stimulator), emulator
        finally:
            stimulator.disconnect()  # never raises on a dead port


def assert_slew_limited(commands, since: float, start: float, slew: float) -> None:
    """Every command after ``since`` is within ``slew`` per second of ``start`` and of the one
    before (each step at most ``MAX_STEP_S`` of slew)."""
    amplitudes = [start] + [c.amplitude for c in commands if c.write_time > since]
    times = [since] + [c.write_time for c in commands if c.write_time > since]
    for amplitude, time in zip(amplitudes[1:], times[1:], strict=True):
        assert abs(amplitude - start) <= slew * (time - since) + SLEW_TOL
    steps = np.abs(np.diff(amplitudes))
    assert steps.max(initial=0) <= slew * MAX_STEP_S + SLEW_TOL


def test_decide_writes_what_the_governor_allows_not_what_was_asked(tacs):
    p = tacs
    started = pylsl.local_clock()
    assert p.decide_until(lambda: p.path.governor.amplitude >= 0.15, timeout_s=2.0)
    # the phase controller asks for its full 1 mA at once; the stimulator saw only the slew
    assert p.commands, "nothing was written"
    assert p.commands[0].amplitude == 0.0  # the first request starts from zero
    assert all(0.0 <= c.amplitude < 1.0 for c in p.commands)
    assert p.stimulator.last.amplitude == p.path.governor.amplitude
    assert p.stimulator.output == (p.path.governor.amplitude, 10.0, 0)
    assert_slew_limited(p.commands, started, 0.0, slew=0.5)
    # a phase controller writes only what changed; every write is published once, in order
    assert p.outlets.commands == p.commands
    assert "safety.clamp" in p.kinds()
    # no stimulation requested: the output comes down again, through the same slew limit
    top, fall = p.path.governor.amplitude, pylsl.local_clock()
    p.path.decide(np.array([0.0]), fall, stimulate=False)
    assert top - 0.5 * MAX_STEP_S - SLEW_TOL <= p.stimulator.last.amplitude < top


def test_amplitude_policy_writes_every_decision_and_trips_on_non_finite_rows():
    protocol, _ = load_protocol("demo", [])  # proportional on p(right), 1 mA/s slew
    with SimulatedStimulator("tdcs") as stimulator:
        p = Path(protocol, stimulator)
        # the policy ramps on sample time (0.5 mA/s: 1 mA by 2 s); the governor slews on its
        # own clock, of which these five calls take far less than a millisecond
        started = pylsl.local_clock()
        for i in range(5):
            p.path.decide(np.array([0.0, 1.0]), float(i), stimulate=True)
        assert p.path.policy.amplitude == pytest.approx(1.0)
        assert [c.sample_time for c in p.commands] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert_slew_limited(p.commands, started, 0.0, slew=1.0)
        assert p.commands[-1].amplitude == p.path.governor.amplitude < 0.01
        assert p.outlets.commands == p.commands
        p.path.decide(np.array([np.nan, np.nan]), 5.0, stimulate=True)
        assert p.path.governor.state.tripped == "decoder non-finite output"
        assert "safety.trip" in p.kinds()
        assert len(p.commands) == 6  # the non-finite row still writes the (held) output
        assert p.commands[-1].amplitude <= p.commands[-2].amplitude


def test_estop_zeroes_the_output_at_once_and_stays_latched(tacs):
    p = tacs
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.1, timeout_s=2.0)
    n_before = len(p.commands)
    reply = p.serve({"cmd": "estop", "who": "test"})
    assert reply == {"ok": True, "estop": "emergency stop by test"}
    # written in the same serve() call, not at the next decision
    assert len(p.commands) == n_before + 1
    assert p.stimulator.last.amplitude == 0.0 and p.stimulator.output == (0.0, 0.0, 0)
    assert p.path.governor.estopped and "safety.estop" in p.kinds()
    latched_at = pylsl.local_clock()
    # decisions go on asking for 1 mA: nothing but zero reaches the stimulator
    assert not p.decide_until(lambda: p.path.governor.amplitude > 0, timeout_s=0.3)
    assert all(c.amplitude == 0.0 for c in p.commands if c.write_time >= latched_at)
    assert p.stimulator.output[0] == 0.0
    # a second estop is answered and changes nothing
    assert p.serve({"cmd": "estop"})["ok"] and p.kinds().count("safety.estop") == 1


def test_rearm_needs_confirmation_then_rises_only_through_the_slew_limit(tacs):
    p = tacs
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.1, timeout_s=2.0)
    p.serve({"cmd": "estop"})
    refused = p.serve({"cmd": "rearm"})
    assert refused["ok"] is False and "confirm" in refused["error"]
    with pytest.raises(ValueError, match="confirm"):  # only JSON true counts: refused at post
        p.serve({"cmd": "rearm", "confirm": "yes"})
    assert p.path.governor.estopped and "safety.rearm" not in p.kinds()
    rearmed_at = pylsl.local_clock()
    reply = p.serve({"cmd": "rearm", "confirm": True, "who": "test"})
    assert reply == {"ok": True, "rearmed": True}
    assert not p.path.governor.estopped and "safety.rearm" in p.kinds()
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.1, timeout_s=2.0)
    assert_slew_limited(p.commands, rearmed_at, 0.0, slew=0.5)
    # re-arming what is not latched is answered, and says nothing was lifted
    assert p.serve({"cmd": "rearm", "confirm": True}) == {"ok": True, "rearmed": False}


def test_status_and_stop_replies(tacs):
    p = tacs
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.05, timeout_s=2.0)
    reply = p.serve({"cmd": "status"}, status={"block": "closed_loop", "elapsed_s": 1.5})
    assert reply["ok"] is True and reply["block"] == "closed_loop" and reply["elapsed_s"] == 1.5
    assert reply["amplitude"] == p.path.governor.amplitude > 0.05
    assert reply["estop"] is None and reply["tripped"] is None and reply["limit"] is None
    assert reply["pulses"] == 0 and reply["charge_mC"] > 0
    assert reply["stimulator_failed"] is None
    p.serve({"cmd": "estop", "who": "test"})
    stopped = p.serve({"cmd": "status"})
    assert stopped["estop"] == "emergency stop by test" and stopped["amplitude"] == 0.0
    assert not p.path.stop_requested
    assert p.serve({"cmd": "stop"}) == {"ok": True, "stopping": True}
    assert p.path.stop_requested


def test_serve_answers_every_queued_command_in_order(tacs):
    p = tacs
    inbox = ControlInbox()
    futures = [inbox.post({"cmd": cmd}) for cmd in ("status", "estop", "status")]
    with pytest.raises(ValueError, match="estop"):
        inbox.post({"cmd": "explode"})  # refused at the door, never queued
    now = pylsl.local_clock()
    p.path.serve(inbox, now, now, dict)
    first, estop, last = (future.result(timeout=0) for future in futures)
    assert first["estop"] is None and estop["ok"] and last["estop"] is not None
    p.path.serve(inbox, now, now, dict)  # drained: nothing left to answer


def test_unplugged_stimulator_fails_the_path_and_latches_the_estop(tes):
    p, emulator = tes
    assert p.decide_until(lambda: emulator.output_ma > 0, timeout_s=2.0)
    n_commands = len(p.commands)
    emulator.unplug()
    with pytest.raises(StimulatorError, match=r"tES stimulator.*(cable|reply)"):
        now = pylsl.local_clock()
        p.path.governor.request(p.path.governor.amplitude + 0.01, now)
        p.path.write(now, origin="decision", decided_at=now)
    assert p.path.failed and "tES stimulator" in p.path.failed
    assert p.path.governor.estopped and p.path.governor.amplitude == 0.0
    estop = next(e for e in p.events if e["kind"] == "safety.estop")
    assert "stimulator failed" in estop["detail"]
    # nothing more goes to the dead device, and nothing raises any more
    assert p.path.write(0.0, origin="decision", decided_at=0.0) is None
    p.path.decide(np.array([0.0]), pylsl.local_clock(), stimulate=True)
    p.path.poll(pylsl.local_clock())
    p.path.hold_safe(pylsl.local_clock(), pylsl.local_clock())
    assert len(p.commands) == n_commands
    refused = p.serve({"cmd": "rearm", "confirm": True})
    assert refused["ok"] is False and "cannot be re-armed" in refused["error"]
    assert p.path.governor.estopped
    assert p.serve({"cmd": "status"})["stimulator_failed"] == p.path.failed


def test_heartbeat_failure_reaches_the_path_at_poll(tes):
    p, emulator = tes
    assert p.decide_until(lambda: emulator.output_ma > 0, timeout_s=2.0)
    emulator.unplug()
    failure: list[StimulatorError] = []

    def poll_fails() -> bool:  # only the driver's heartbeat thread talks to the device now
        try:
            p.path.poll(pylsl.local_clock())
        except StimulatorError as err:
            failure.append(err)
        return bool(failure)

    assert wait_for(poll_fails, timeout_s=1.0)
    assert p.path.failed == str(failure[0]) and p.path.governor.estopped
    assert "safety.estop" in p.kinds()


def test_ramp_to_zero_follows_the_stop_ramp_then_writes_zero(tacs):
    p = tacs
    assert p.decide_until(lambda: p.path.governor.amplitude > 0.2, timeout_s=2.0)
    top, start = p.path.governor.amplitude, pylsl.local_clock()
    p.path.ramp_to_zero(threading.Event().wait, pylsl.local_clock)
    ramp = [c for c in p.commands if c.write_time >= start]
    amplitudes = [c.amplitude for c in ramp]
    assert amplitudes[-1] == 0.0 and max(amplitudes) <= top
    assert all(b <= a for a, b in itertools.pairwise(amplitudes))
    # alpha_phase_tacs: stop_ramp_s = 1 s, and the ramp does not end in one step
    assert ramp[-1].write_time - start <= 1.0 + 0.2 and len(ramp) > 5
    assert "safety.hold" in p.kinds()


@pytest.mark.parametrize(
    ("name", "overrides", "kind"),
    [
        ("demo", [], ProportionalController),
        ("beta_adaptive", [], DualThresholdController),
        ("demo", ['controller={kind="class_map", amplitudes=[0.0, 1.0]}'], ClassMapController),
        ("alpha_phase_tacs", [], type(None)),
        ("mu_trough_tms", ["session.participant=test-tms"], type(None)),
    ],
)
def test_build_policy_builds_the_protocols_controller(name, overrides, kind):
    protocol, _ = load_protocol(name, overrides)
    policy = build_policy(protocol)
    assert type(policy) is kind
    ctl = protocol.controller
    if isinstance(policy, ProportionalController):
        s = policy.settings
        assert (s.p_low, s.p_high, s.ceiling) == (ctl.p_low, ctl.p_high, ctl.ceiling)
        if ctl.input == "decoder":
            assert s.target_index == protocol.decoder.classes.index(ctl.target_class)
    elif isinstance(policy, DualThresholdController):
        s = policy.settings
        assert (s.lower, s.upper, s.on_amplitude) == (ctl.lower, ctl.upper, ctl.on_amplitude)
        assert s.ramp_up_per_s == ctl.ramp_up_per_s
    elif isinstance(policy, ClassMapController):
        assert tuple(policy.settings.amplitudes) == (0.0, 1.0)
