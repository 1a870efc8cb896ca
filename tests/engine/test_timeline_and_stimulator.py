import itertools

import pytest

from bci.engine.timeline import plan_blocks, planned_duration_s
from bci.protocol import load_protocol
from devices.stimulators import SimulatedStimulator


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
        stim.write(1.0, 0.0, 0, 0.0)
    stim.start()
    command = stim.write(1.0, 0.0, 0, 123.0)
    assert stim.output == (1.0, 0.0, 0) and command.write_time > 0 and stim.n_commands == 1
    stim.disconnect()
    assert stim.output == (0.0, 0.0, 0)
    with SimulatedStimulator() as again:
        again.write(0.5, 0.0, 0, 0.0)
    assert again.output == (0.0, 0.0, 0)


def test_stimulator_refuses_what_no_governor_would_allow():
    with SimulatedStimulator("tacs") as stim:
        for amplitude in (float("nan"), 2.5, -2.5):
            with pytest.raises(ValueError, match="nothing was written"):
                stim.write(amplitude, 10.0, 0, 0.0)
        with pytest.raises(ValueError, match="frequency_hz"):
            stim.write(1.0, -1.0, 0, 0.0)
        assert stim.output == (0.0, 0.0, 0) and stim.n_commands == 0
    with pytest.raises(ValueError, match="modality"):
        SimulatedStimulator("ect")
