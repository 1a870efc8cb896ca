"""``bci dose PARTICIPANT``: a participant's stimulation sessions and rolling 24 h totals against
the daily limits; and the dose lines of ``bci check``."""

from __future__ import annotations

import math
import sys
import time

from bci.cli_session import EXIT_BAD_INPUT
from bci.safety.dose import DAY_S, DoseTotals
from bci.safety.ledger import (
    history,
    known_participants,
    ledger_dir,
    ledger_path,
    participant_totals,
)
from bci.safety.site import SiteLimits, SiteLimitsError, load_site_limits


def _stamp(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(wall))


def _amount(value: float, unit: str, digits: int = 0) -> str:
    return "no limit" if math.isinf(value) else f"{value:.{digits}f} {unit}"


def _dose(dose: DoseTotals) -> str:
    return (f"on {dose.on_time_s:7.1f} s  charge {dose.charge_mc:8.1f} mC  "
            f"pulses {dose.pulses:5.0f}")  # fmt: skip


def daily_lines(modality: str, used: DoseTotals, site: SiteLimits) -> list[str]:
    """Rolling 24 h totals of ``modality`` against the daily limits of the site layer."""
    limits = {key: site.ceiling(modality, key)
              for key in ("max_daily_s", "max_daily_charge_mc", "max_daily_pulses")}  # fmt: skip
    rows = [("on-time", used.on_time_s, "s", 1, "max_daily_s"),
            ("charge", used.charge_mc, "mC", 1, "max_daily_charge_mc"),
            ("pulses", used.pulses, "", 0, "max_daily_pulses")]  # fmt: skip
    lines = []
    for label, value, unit, digits, key in rows:
        limit, layer = limits[key]
        left = _amount(max(limit - value, 0.0), unit, digits).strip()
        cap = _amount(limit, unit, digits).strip()
        source = layer.split(" (")[0]
        lines.append(f"    {label:8s} {value:9.{digits}f} {unit:2s} of {cap} ({source}); "
                     f"left {left}")  # fmt: skip
    return lines


def cmd_dose(args) -> int:
    directory = args.ledger_dir or None
    try:
        path = ledger_path(args.participant, directory)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not path.exists():
        known = known_participants(directory)
        listed = ", ".join(known[:20]) if known else "none"
        print(f"error: no dose ledger for participant {args.participant!r} in {path.parent} "
              f"(participants there: {listed}); check the id, or --ledger-dir",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    try:
        site = load_site_limits()
    except SiteLimitsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    now = time.time()
    sessions = history(args.participant, directory)
    print(f"dose ledger of {args.participant}: {path}")
    print(site.describe())
    print(f"sessions ({len(sessions)}):")
    for s in sessions:
        status = "" if s.ended else "  (no end line: running, or it crashed)"
        print(f"  {_stamp(s.started)}  {s.modality:11s} {s.protocol[:20]:20s} {_dose(s.dose)}"
              f"{status}")  # fmt: skip
    print(f"last 24 h (since {_stamp(now - DAY_S)}), against the daily limits in force "
          "(a protocol may set lower ones):")  # fmt: skip
    shown = False
    for modality in sorted({s.modality for s in sessions}):
        used = participant_totals(args.participant, modality, now, DAY_S, directory)
        if used == DoseTotals():
            continue
        shown = True
        print(f"  {modality}:")
        print("\n".join(daily_lines(modality, used, site)))
    if not shown:
        print("  no stimulation in the last 24 h")
    return 0


def check_lines(protocol) -> list[str]:
    """What ``bci check`` adds to its OK line: the site file in force and, with a participant,
    the daily limits the session would run under."""
    site = load_site_limits()
    lines = [site.describe()]
    if protocol.session.participant:
        settings = protocol.stimulator.governor_settings(protocol.safety.stop_ramp_s, site=site)
        lines.append(
            f"participant {protocol.session.participant}: daily {settings.modality} limits: "
            f"on-time {_amount(settings.max_daily_s, 's')}, "
            f"charge {_amount(settings.max_daily_charge_mc, 'mC')}, "
            f"pulses {_amount(settings.max_daily_pulses, '').strip()}; dose ledger in "
            f"{ledger_dir()}"
        )
    return lines


def add_dose_parser(sub) -> None:
    """The ``dose`` command."""
    dose = sub.add_parser(
        "dose", help="a participant's stimulation dose: sessions and the last 24 h",
        description="Show what the dose ledger holds for PARTICIPANT: each session's date, "
        "modality, protocol, stimulation on-time, charge and pulses, then the totals over the "
        "last 24 hours against the daily limits in force (site file, else hard ceilings). A "
        "session cannot start while a daily limit is used up; this says how much is left. "
        "The ledger folder is $NEUROLOOP_LEDGER_DIR, else ~/.local/share/neuroloop/ledger.",
    )  # fmt: skip
    dose.add_argument("participant", help="the participant's id, as in session.participant")
    dose.add_argument("--ledger-dir", help="read the ledger in this folder instead")
    dose.set_defaults(func=cmd_dose)
