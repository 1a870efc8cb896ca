"""Property-based tests of the governor: whatever a controller, a clock or an operator does,
no output exceeds a ceiling, a session limit or a slew limit, and the charge stays in budget.

Each hypothesis example is one random sequence of requests (NaN, inf, huge, negative, rapid
flips), clock jumps (back and forward), stalls, trips, recoveries, emergency stops, re-arms and
pulses, against randomly drawn session limits. Each drawn sequence runs against all four
modalities: 100,000 sequences checked in `make nightly`, 20,000 in `make test`.
"""

from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bci.safety.ceilings import HARD_CEILINGS, max_pulse_amplitude_ma
from bci.safety.governor import MAX_HOLD_S, Governor, GovernorSettings

# drawn sequences, each run on the 4 modalities: 100,000 sequences (~2.5 min) with BCI_FULL_TESTS=1
# (`make nightly`), a fifth of that in `make test` to keep the suite under 15 minutes
EXAMPLES = 25_000 if os.environ.get("BCI_FULL_TESTS") else 5_000
MODALITIES = tuple(HARD_CEILINGS)

_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),  # anything, NaN and inf included
    st.floats(-10.0, 10.0),  # near the ceilings
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 4.0, -4.0, 1e-300]),
)
_dts = st.one_of(
    st.floats(0.0, 0.2),  # the decision rate
    st.sampled_from([0.0, 1e-9, 0.05, 0.1]),
    st.floats(-100.0, 0.0),  # the clock jumps back
    st.floats(0.2, 3600.0),  # stalls and forward jumps
)
_ops = st.one_of(
    st.tuples(st.just("request"), _values, _dts),
    st.tuples(st.just("request"), _values, _dts),
    st.tuples(st.just("request"), _values, _dts),
    st.tuples(st.sampled_from(["tick", "pulse", "trip", "recover", "estop", "rearm"]),
              st.just(0.0), _dts),
)  # fmt: skip


_limits = st.fixed_dictionaries(
    {
        "max_amplitude": st.floats(0.0, 1.0),  # of the modality's hard ceiling
        "max_slew_per_s": st.floats(1e-3, 1.0),  # of the tES slew ceiling
        "stop_ramp_s": st.floats(0.01, 1.0),
        "max_step_s": st.floats(0.01, 1.0),
        # small budgets, so that sequences actually reach them
        "max_charge_mc": st.floats(0.0, 40.0),
        "max_session_s": st.floats(0.0, 30.0),
    }
)


def _settings(modality: str, limits: dict) -> GovernorSettings:
    hard = HARD_CEILINGS[modality]
    limits = {
        **limits,
        "max_amplitude": limits["max_amplitude"] * hard.max_amplitude,
        "max_slew_per_s": limits["max_slew_per_s"] * min(hard.max_slew_per_s, 50.0),
    }
    extra = {}
    if modality == "tacs":
        extra["frequency_hz"] = 10.0
    if modality == "pulse_train":
        extra.update(frequency_hz=130.0, pulse_width_us=90.0, electrode_area_cm2=0.03)
        bound = max_pulse_amplitude_ma(90.0, 0.03)
        limits = {**limits, "max_amplitude": min(limits["max_amplitude"], bound)}
    if modality == "tms":  # an intensity setting: no slew, no charge
        limits.update(max_slew_per_s=math.inf, max_charge_mc=None, max_session_s=None)
        extra["max_pulses"] = 5
    return GovernorSettings(modality=modality, **limits, **extra)


def check_sequence(modality: str, limits: dict, ops: list) -> None:
    s = _settings(modality, limits)
    hard = HARD_CEILINGS[modality]
    gov = Governor(s)
    time = 1000.0
    clock = None  # the governor's view: the latest time seen
    previous = 0.0
    charge = on_time = 0.0
    last_pulse = None
    estopped = False
    held_since = None  # (time, amplitude) a trip started at
    slew_from = None  # the last request, or the end of a hold: what the slew limit counts from
    for op, value, dt in ops:
        time += dt
        was_held = gov.tripped
        if op == "request":
            out = gov.request(value, time)
        elif op == "tick":
            out = gov.tick(time)
        elif op == "pulse":
            fired = gov.request_pulse(time)
            out = gov.amplitude
            if fired:
                assert not estopped and out != 0
                assert last_pulse is None or time - last_pulse >= s.min_pulse_interval_s
                last_pulse = time
        elif op == "trip":
            gov.trip("watchdog", time)
            out = gov.amplitude
        elif op == "recover":
            gov.recover(time)
            out = gov.amplitude
        elif op == "estop":
            out = gov.estop("operator", time)
            estopped = True
        else:
            gov.rearm(time)
            out = gov.amplitude
            estopped = False
        # the ZOH integral, each output held at most MAX_HOLD_S, on the governor's clock
        elapsed = 0.0 if clock is None else max(time - clock, 0.0)
        clock = time if clock is None else max(clock, time)
        if previous:
            charge += abs(previous) * min(elapsed, MAX_HOLD_S) * (hard.unit == "mA")
            on_time += min(elapsed, MAX_HOLD_S)
        assert math.isfinite(out)
        assert abs(out) <= s.max_amplitude + 1e-12
        assert s.signed or out >= 0
        assert charge <= s.max_charge_mc + 1e-9
        assert on_time <= s.max_session_s + 1e-9
        if estopped:
            assert out == 0
        if gov.tripped or was_held:
            # held: never rises, never flips polarity
            assert abs(out) <= abs(previous) + 1e-12 and out * previous >= 0
            if held_since is None and gov.tripped:
                held_since = (time, previous)
            if s.slewed and held_since and time - held_since[0] >= s.stop_ramp_s:
                assert out == 0  # the ramp ends within stop_ramp_s
        elif s.slewed:
            since = 0.0 if slew_from is None else max(time - slew_from, 0.0)
            step = s.max_slew_per_s * min(since, s.max_step_s)
            assert abs(out - previous) <= step + 1e-9 * max(1.0, abs(previous))
        lifted = was_held and op in ("recover", "rearm")
        if not gov.tripped and (op == "request" or lifted):
            slew_from = time if slew_from is None else max(slew_from, time)
        if not gov.tripped:
            held_since = None
        if not s.slewed and gov.tripped:
            assert out == 0  # TMS disarms at once
        previous = out
    assert gov.state.charge_mc <= s.max_charge_mc + 1e-9
    assert abs(gov.state.charge_mc - charge) <= 1e-6 * max(1.0, charge)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(limits=_limits, ops=st.lists(_ops, min_size=1, max_size=60))
def test_no_sequence_drives_any_modality_beyond_its_limits(limits, ops):
    for modality in MODALITIES:
        check_sequence(modality, limits, ops)


def test_a_long_closed_loop_reaches_the_charge_limit_and_stays_within_it():
    s = GovernorSettings("tdcs", 2.0, 1.0, max_charge_mc=120.0, max_step_s=0.1)
    gov = Governor(s)
    times = np.arange(0.0, 200.0, 0.05)
    outputs = [gov.request(2.0, float(t)) for t in times]
    assert gov.state.latched and "charge" in gov.state.latched
    assert outputs[-1] == 0.0
    assert gov.state.charge_mc <= 120.0
    assert gov.state.charge_mc > 110.0  # it used the budget, it did not stop early
