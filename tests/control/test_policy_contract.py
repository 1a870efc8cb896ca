"""Every amplitude policy honours the engine's interface: ``policy(row, time) -> float``,
``reset(amplitude=None)``, non-finite rows ignored, ramp limits respected."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bci.control import (
    ClassMapController,
    ClassMapSettings,
    DualThresholdController,
    DualThresholdSettings,
    ProportionalController,
    ProportionalSettings,
)

UP, DOWN = 0.5, 1.0

POLICIES = {
    "proportional": lambda: ProportionalController(
        ProportionalSettings(target_index=1, ceiling=2.0, ramp_up_per_s=UP, ramp_down_per_s=DOWN)
    ),
    "dual_threshold": lambda: DualThresholdController(
        DualThresholdSettings(
            lower=0.3,
            upper=0.6,
            on_amplitude=2.0,
            value_index=1,
            ramp_up_per_s=UP,
            ramp_down_per_s=DOWN,
        )
    ),
    "class_map": lambda: ClassMapController(
        ClassMapSettings(amplitudes=(0.0, 2.0), ramp_up_per_s=UP, ramp_down_per_s=DOWN)
    ),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_contract(name):
    policy = POLICIES[name]()
    rng = np.random.default_rng(0)
    outputs, times = [], np.arange(0.0, 20.0, 0.1)
    for t in times:
        p = rng.uniform()
        out = policy(np.array([1 - p, p]), float(t))
        assert isinstance(out, float) and math.isfinite(out)
        outputs.append(out)
    steps = np.diff(outputs)
    assert steps.max() <= UP * 0.1 + 1e-12 and steps.min() >= -DOWN * 0.1 - 1e-12
    held = policy.amplitude
    assert policy(np.array([math.nan, 0.5]), 20.0) == held
    policy.reset(1.5)
    assert policy.amplitude == 1.5
    policy.reset()
    assert policy.amplitude == 0.0
