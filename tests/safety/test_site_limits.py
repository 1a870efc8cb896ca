"""Site limits: a site file may only lower the hard ceilings; protocols may only go lower still,
and `bci check` names the layer that refused."""

import math
import os

import pytest

from bci.cli import main
from bci.protocol import ProtocolError, load_protocol
from bci.safety import site as site_module
from bci.safety.site import (
    HARD_ONLY,
    SITE_LIMITS_ENV,
    SiteLimitsError,
    load_site_limits,
    read_site_limits,
    site_limits_file,
)

TMS = ["session.participant=P017"]
"""mu_trough_tms (Magstim) needs a participant."""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Write a site file and put it in force via $NEUROLOOP_SITE_LIMITS."""

    def write(text: str):
        path = tmp_path / "site-limits.toml"
        path.write_text(text)
        monkeypatch.setenv(SITE_LIMITS_ENV, str(path))
        return path

    return write


def test_the_tests_run_without_a_site_file():
    assert os.environ[SITE_LIMITS_ENV] == "none"
    assert site_limits_file()[0] is None
    assert load_site_limits().path is None
    assert "none" in load_site_limits().describe() and "hard ceilings only" in HARD_ONLY.describe()


def test_a_site_file_is_read_and_its_layer_is_named(site):
    path = site("[tms]\nmax_amplitude = 80\nmax_daily_pulses = 1800\n[tdcs]\nmax_daily_s = 1200\n")
    limits = load_site_limits()
    assert limits.path == path and limits.origin == f"set by {SITE_LIMITS_ENV}"
    assert limits.value("tms", "max_amplitude") == 80
    assert limits.value("tacs", "max_amplitude") is None
    value, layer = limits.ceiling("tms", "max_amplitude")
    assert value == 80 and layer.startswith("site limit (site file") and str(path) in layer
    value, layer = limits.ceiling("tacs", "max_amplitude")
    assert value == 2.0 and layer.startswith("tacs hard ceiling (Antal")
    assert limits.describe() == f"site limits: {path} (set by {SITE_LIMITS_ENV})"


def test_a_changed_site_file_is_read_again(site):
    site("[tms]\nmax_amplitude = 80\n")
    assert load_site_limits().value("tms", "max_amplitude") == 80
    site("[tms]\nmax_amplitude = 75.5\n")  # another size: read again even within one mtime tick
    assert load_site_limits().value("tms", "max_amplitude") == 75.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[tms]\nmax_amplitude = 120\n",
         "[tms] max_amplitude = 120 %MSO is above the tms hard ceiling of 100 %MSO (Rossi"),
        ("[tdcs]\nmax_daily_charge_mc = 9000\n",
         "[tdcs] max_daily_charge_mc = 9000 mC is above the tdcs hard ceiling of 7200 mC"),
        ("[tdsc]\nmax_amplitude = 1\n", "[tdsc] is not a modality; tables are tdcs, tacs"),
        ("[tacs]\nmax_amp = 1\n", "[tacs] max_amp: unknown key; allowed: max_amplitude"),
        ("[tacs]\nmax_amplitude = -1\n", "[tacs] max_amplitude = -1: must be a number >= 0 mA"),
        ("[tacs]\nmax_amplitude = 'x'\n", "[tacs] max_amplitude = 'x': must be a number"),
        ("[tms]\nmax_pulses = 2.5\n", "[tms] max_pulses = 2.5: must be a whole number"),
        ("[tms\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_site_file_is_refused_naming_file_table_key_value_and_ceiling(site, text,
                                                                            expected):  # fmt: skip
    path = site(text)
    with pytest.raises(SiteLimitsError) as err:
        load_site_limits()
    message = str(err.value)
    assert message.startswith(f"site limits file {path} (set by {SITE_LIMITS_ENV}): ")
    assert expected in message, message
    assert "A site may only lower the hard ceilings" in message


def test_a_named_site_file_that_is_missing_is_refused_not_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv(SITE_LIMITS_ENV, str(tmp_path / "typo.toml"))
    with pytest.raises(SiteLimitsError, match=r"typo\.toml.*cannot be read.*=none"):
        load_site_limits()


def test_read_site_limits_reads_a_file_directly(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[pulse_train]\nmax_amplitude = 3\nmax_slew_per_s = 100\n")
    limits = read_site_limits(path, "given")
    assert limits.value("pulse_train", "max_slew_per_s") == 100 and limits.origin == "given"


def test_bci_check_names_the_site_file_in_force(site, capsys):
    assert main(["check", "demo"]) == 0
    assert "site limits: none (NEUROLOOP_SITE_LIMITS=none), hard ceilings only" in (
        capsys.readouterr().out
    )
    path = site("[tdcs]\nmax_amplitude = 3.0\n")
    assert main(["check", "demo"]) == 0
    assert f"site limits: {path} (set by {SITE_LIMITS_ENV})" in capsys.readouterr().out


def test_bci_check_names_the_layer_that_refused(site, capsys):
    path = site("[tms]\nmax_amplitude = 65\n")
    assert main(["check", "mu_trough_tms", *(f"--set={o}" for o in TMS)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("1 problem(s)"), err  # the controller's 60 %MSO is within 65
    assert err[1].strip() == (
        "stimulator.limits.max_amplitude: got 70 %MSO; above the site limit of 65 %MSO "
        f"(site file {path}; set by {SITE_LIMITS_ENV})"
    )
    # the hard layer names itself
    assert main(["check", "mu_trough_tms", "--set=session.participant=P017",
                 "--set=stimulator.limits.max_amplitude=110"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "stimulator.limits.max_amplitude: got 110.0 %MSO; above the tms hard ceiling of " \
        "100.0 %MSO (Rossi" in err  # fmt: skip


def test_the_controller_peak_is_checked_against_the_site(site):
    site("[tdcs]\nmax_amplitude = 0.8\n")
    with pytest.raises(ProtocolError) as err:
        load_protocol("demo")  # limits 1.5 mA, controller ceiling 1.0 mA
    assert [line.split(";")[0] for line in err.value.lines] == [
        "stimulator.limits.max_amplitude: got 1.5 mA",
        "controller: asks for up to 1 mA",
    ]
    assert all("above the site limit of 0.8 mA" in line for line in err.value.lines)


def test_a_bad_site_file_fails_bci_check_in_one_line_per_problem(site, capsys):
    path = site("[tms]\nmax_amplitude = 120\n[tdcs]\nmax_session_s = 9999\n")
    assert main(["check", "demo"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("2 problem(s)")
    assert err[1].strip().startswith(f"site limits file {path} (set by {SITE_LIMITS_ENV}): [tms]")
    assert "[tdcs] max_session_s = 9999 s is above the tdcs hard ceiling of 2400 s" in err[2]


def test_governor_settings_take_the_stricter_of_site_and_protocol(site):
    protocol, _ = load_protocol("mu_trough_tms", TMS)
    settings = protocol.stimulator.governor_settings(site=HARD_ONLY)
    assert settings.max_daily_pulses == math.inf and settings.max_pulses == 900
    site("[tms]\nmax_pulses = 950\nmax_daily_pulses = 1800\n[tdcs]\nmax_daily_s = 600\n")
    settings = protocol.stimulator.governor_settings()  # the site file in force
    assert settings.max_pulses == 900  # the protocol's own is lower
    assert settings.max_daily_pulses == 1800  # left out by the protocol: the site's
    lower, _ = load_protocol("mu_trough_tms", [*TMS, "stimulator.limits.max_daily_pulses=100"])
    assert lower.stimulator.governor_settings().max_daily_pulses == 100
    tdcs, _ = load_protocol("demo")
    settings = tdcs.stimulator.governor_settings()
    assert settings.max_daily_s == 600 and settings.max_daily_charge_mc == 7200  # site, hard
    with pytest.raises(ProtocolError, match="max_daily_pulses: got 2000 pulses; above the site"):
        load_protocol("mu_trough_tms", [*TMS, "stimulator.limits.max_daily_pulses=2000"])


def test_a_site_file_made_stricter_after_the_check_refuses_the_governor(site):
    protocol, _ = load_protocol("mu_trough_tms", TMS)
    site("[tms]\nmax_amplitude = 50\n")
    with pytest.raises(ValueError, match="max_amplitude: got 70 %MSO; above the site limit"):
        protocol.stimulator.governor_settings()


def test_protocol_daily_limits_are_checked_against_the_hard_ceilings():
    with pytest.raises(ProtocolError, match=r"stimulator\.limits\.max_daily_s: must be within "
                       r"0\.\.2400 s, got 3000"):  # fmt: skip
        load_protocol("demo", ["stimulator.limits.max_daily_s=3000"])


def test_the_environment_cannot_lift_the_system_wide_file(tmp_path, monkeypatch):
    system = tmp_path / "etc-site-limits.toml"
    system.write_text("[tms]\nmax_amplitude = 80\n[tdcs]\nmax_amplitude = 2.0\n")
    monkeypatch.setattr(site_module, "SYSTEM_SITE_LIMITS", system)
    monkeypatch.setenv("NEUROLOOP_SITE_LIMITS", "none")
    site = load_site_limits()
    assert site.value("tms", "max_amplitude") == 80 and "cannot lift it" in site.origin
    looser = tmp_path / "mine.toml"
    looser.write_text("[tms]\nmax_amplitude = 95\nmax_daily_pulses = 1000\n"
                      "[tdcs]\nmax_amplitude = 1.5\n")  # fmt: skip
    monkeypatch.setenv("NEUROLOOP_SITE_LIMITS", str(looser))
    site = load_site_limits()
    assert site.value("tms", "max_amplitude") == 80  # the system's, the stricter
    assert site.value("tms", "max_daily_pulses") == 1000  # added by the chosen file
    assert site.value("tdcs", "max_amplitude") == 1.5
