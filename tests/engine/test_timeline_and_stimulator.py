import dataclasses
import itertools

import pytest

from bci.engine.timeline import plan_blocks, planned_duration_s
from bci.protocol import load_protocol
from bci.safety.command import GovernedCommand
from devices.stimulators import CommandRefused, SessionLimits, SimulatedStimulator
from tests.devices.governed import governed


def test_calibration_trials_are_balanced_randomized_and_reproducible():
    protocol, _ = load_protocol("demo")
    blocks = plan_blocks(protocol.blocks, seed=1)
    calibration = blocks[1].trials
    labels = [t.label for t in calibration]
    assert len(labels) == 40 and labels.count("left") == labels.count("right") == 20
    assert labels != sorted(labels)
    assert plan_blocks(protocol.blocks, seed=1) == blocks
    assert plan_blocks(protocol.blocks, seed=2) != blocks
    onsets = [t.onset_s for t in calibration]
    assert all(b - a >= 2.5 + 0.5 for a, b in itertools.pairwise(onsets))
    closed = blocks[3]
    assert closed.trials and closed.trials[-1].stop_s <= closed.duration_s
    assert 150 < planned_duration_s(blocks) < 240  # the demo's ≤ 4 minute budget


def test_simulated_stimulator_lifecycle():
    stim = SimulatedStimulator("tdcs")
    with pytest.raises(RuntimeError, match="connect"):
        stim.start()
    stim.connect()
    with pytest.raises(RuntimeError, match="start"):
        stim.write(governed(1.0, 0.0, 0), 0.0)
    stim.start()
    command = stim.write(governed(1.0, 0.0, 0), 123.0)
    assert stim.output == (1.0, 0.0, 0) and command.write_time > 0 and stim.n_commands == 1
    stim.disconnect()
    assert stim.output == (0.0, 0.0, 0)
    with SimulatedStimulator() as again:
        again.write(governed(0.5, 0.0, 0), 0.0)
    assert again.output == (0.0, 0.0, 0)


def test_stimulator_refuses_what_no_governor_would_allow():
    with SimulatedStimulator("tacs") as stim:
        with pytest.raises(TypeError, match="only the governor's commands"):
            stim.write((1.0, 10.0, 0), 0.0)
        with pytest.raises(TypeError, match="made by the safety governor only"):
            GovernedCommand(1.0, 10.0, 0, 0.0, 1, 1)
        with pytest.raises(ValueError, match="must be finite"):
            governed(float("nan"), 10.0)
        for amplitude in (2.5, -2.5):
            with pytest.raises(CommandRefused, match="hard ceiling"):
                stim.write(governed(amplitude, 10.0, 0), 0.0)
        with pytest.raises(CommandRefused, match="frequency_hz"):
            stim.write(governed(1.0, -1.0, 0), 0.0)
        assert stim.output == (0.0, 0.0, 0) and stim.n_commands == 0


def test_stimulator_holds_the_session_limits_behind_the_governor():
    limits = SessionLimits(max_amplitude=1.0, frequency_hz=10.0, max_step=0.1,
                           min_pulse_interval_s=1.0)  # fmt: skip
    with SimulatedStimulator("tacs", limits) as stim:
        stim.write(governed(0.1, 10.0), 0.0)
        with pytest.raises(CommandRefused, match="above the session limit 1"):
            stim.write(governed(1.5, 10.0), 0.0)
        with pytest.raises(CommandRefused, match="frequency 20 Hz"):
            stim.write(governed(0.1, 20.0), 0.0)
        with pytest.raises(CommandRefused, match=r"a step of 0\.2"):
            stim.write(governed(0.3, 10.0), 0.0)
        stim.write(governed(0.2, 10.0, 1, decided_at=5.0), 0.0)
        with pytest.raises(CommandRefused, match=r"0\.500 s after the previous one"):
            stim.write(governed(0.2, 10.0, 1, decided_at=5.5), 0.0)
        with pytest.raises(CommandRefused, match="another governor"):
            stim.write(governed(0.2, 10.0, issuer=99), 0.0)
        stale = governed(0.1, 10.0)
        stim.write(governed(0.1, 10.0), 0.0)
        with pytest.raises(CommandRefused, match="stale"):
            stim.write(stale, 0.0)
        stim.write(governed(0.0), 0.0)  # a fall to zero is never limited
        assert stim.output == (0.0, 0.0, 0) and stim.n_commands == 4


def test_a_copy_of_a_command_cannot_be_made_or_written():
    with SimulatedStimulator("tdcs") as stim:
        issued = governed(0.5)
        with pytest.raises(TypeError, match="made by the safety governor only"):
            dataclasses.replace(issued, amplitude=1.9)
        stim.write(issued, 0.0)
        with pytest.raises(CommandRefused, match="stale or altered"):
            stim.write(issued, 0.0)  # the same object again


def test_a_polarity_change_counts_only_the_part_beyond_zero_as_a_rise():
    limits = SessionLimits(max_amplitude=2.0, max_step=0.15)
    with SimulatedStimulator("tdcs", limits) as stim:
        stim.write(governed(0.1), 0.0)
        stim.write(governed(-0.1), 0.0)  # a step of 0.2 in all, 0.1 of it a rise
        with pytest.raises(CommandRefused, match=r"a step of 0\.2"):
            stim.write(governed(0.2), 0.0)
        assert stim.output[0] == -0.1


    with pytest.raises(ValueError, match="modality"):
        SimulatedStimulator("ect")
