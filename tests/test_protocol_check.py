"""`bci check`: bundled protocols pass; each malformed one gets one clear line and exit 2."""

import pytest

from bci.cli import main
from bci.protocol import ProtocolError, apply_overrides, load_protocol


@pytest.mark.parametrize(
    "name", ["demo", "mi_tdcs", "mu_trough_tms", "alpha_phase_tacs", "beta_adaptive"]
)
def test_bundled_protocols_are_valid(name, capsys):
    # a hardware stimulator (mu_trough_tms: the Magstim) needs the participant's id
    assert main(["check", name, "--set", "session.participant=P017"]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_hardware_stimulator_needs_a_participant(capsys):
    assert main(["check", "mu_trough_tms"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("1 problem(s)"), err
    assert "session.participant: missing; a magstim stimulator stimulates a person" in err[1]
    assert main(["check", "demo", "--set", "session.participant=../etc/x"]) == 2
    assert "session.participant: got '../etc/x'; must be 1-64 letters" in capsys.readouterr().err


def _write(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


MINIMAL = """
[[blocks]]
kind = "baseline"
duration_s = 1
"""


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[session]\nname = 'x'\n", "blocks: missing; this field is required"),
        (MINIMAL + "[source]\neeg_srate = 'fast'\n", "source.eeg_srate: got 'fast'"),
        (
            MINIMAL + "[stimulator]\nkind = 'magic'\n",
            "stimulator.kind: got 'magic'; Input should be 'simulated'",
        ),
        (
            MINIMAL + "[stimulator.limits]\nmax_amplitude = 5.0\n",
            "stimulator.limits.max_amplitude: got 5.0 mA; above the tdcs hard ceiling of 4.0 mA",
        ),
        (
            MINIMAL + "[preprocessing]\npicks = ['C3', 'C99']\n",
            "preprocessing.picks.1: got 'C99'; not a channel of the 32-channel virtual subject",
        ),
        (MINIMAL + "[controller]\nkindd = 'x'\n", "controller.kindd: unknown field"),
        (
            "[[blocks]]\nkind = 'closed_loop'\nduration_s = 10\n",
            "blocks: a closed_loop block needs a fit block",
        ),
        ("[[blocks]]\nkind = 'calibration'\ntrials = 2\n", "blocks.0.trials: got 2;"),
        (
            MINIMAL + "[stimulator]\nmodality = 'tacs'\n",
            "stimulator.frequency_hz: must be within 0.1..150 Hz, got 0.0",
        ),
        ("this is = = not toml", "not valid TOML"),
        (
            MINIMAL + "[stimulator]\nkind = 'magstim'\n",
            "stimulator.modality: got 'tdcs'; a magstim stimulator does tms",
        ),
        (
            MINIMAL + "[stimulator.limits]\nmax_charge_mc = 8000\n",
            "stimulator.limits.max_charge_mc: must be within 0..7200 mC, got 8000",
        ),
        (
            MINIMAL + "[stimulator]\nmodality = 'tms'\n[stimulator.limits]\nmin_pulse_interval_s"
            " = 0.5\nmax_amplitude = 50\n[controller]\nkind = 'phase'\namplitude = 40\n",
            "stimulator.limits.min_pulse_interval_s: must be within 1..inf s, got 0.5",
        ),
        (
            MINIMAL + "[controller]\nkind = 'phase'\n",
            "controller.kind: got 'phase', which fires pulses; stimulator.modality must be tms",
        ),
        (
            MINIMAL + "[stimulator]\nmodality = 'tms'\n",
            "controller.kind: got 'proportional'; TMS fires single pulses",
        ),
        (
            MINIMAL + "[controller]\nkind = 'dual_threshold'\nlower = 2\nupper = 1\n",
            "controller.lower: got 2.0; must not exceed upper = 1.0",
        ),
        (
            MINIMAL + "[controller]\nkind = 'class_map'\namplitudes = [0, 1, 2]\n",
            "controller.amplitudes: got 3 values; need one per class",
        ),
        (
            MINIMAL + "[controller]\nkind = 'class_map'\namplitudes = [0, 3]\n",
            "controller: asks for up to 3.0; must not exceed stimulator.limits.max_amplitude",
        ),
        (
            "[controller]\nkind = 'dual_threshold'\n[[blocks]]\nkind = 'closed_loop'\n"
            "duration_s = 10\n",
            "blocks: a dual_threshold controller needs a baseline block before the closed loop",
        ),
    ],
)
def test_malformed_protocol_gives_one_clear_line_and_exit_2(tmp_path, capsys, toml, expected):
    assert main(["check", _write(tmp_path, toml)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("1 problem(s)"), err
    assert expected in err[1], err


def test_missing_file_lists_bundled_protocols(capsys):
    assert main(["check", "nonexistent"]) == 2
    assert "demo" in capsys.readouterr().err


def test_overrides_set_nested_fields_and_list_items():
    protocol, _ = load_protocol(
        "demo",
        [
            "blocks.1.trials=20",
            "source.fnirs=false",
            "preprocessing.bandpass_hz=[6, 32]",
            "session.name=abc",
            "decoder.model=",  # the demo's pretrained model was trained on [8, 30]
        ],
    )
    assert protocol.blocks[1].trials == 20 and protocol.source.fnirs is False
    assert protocol.preprocessing.bandpass_hz == (6, 32) and protocol.session.name == "abc"
    assert protocol.decoder.model is None
    with pytest.raises(ProtocolError, match="no item"):
        apply_overrides({"blocks": [{}]}, ["blocks.5.x=1"])
    with pytest.raises(ProtocolError, match=r"dotted\.key=value"):
        apply_overrides({}, ["novalue"])


def test_every_command_has_help(capsys):
    for command in (
        ["demo"],
        ["run"],
        ["check"],
        ["simulate"],
        ["stream", "brainflow"],
        ["streams"],
        ["bench", "latency"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "usage: bci" in capsys.readouterr().out
