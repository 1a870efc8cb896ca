"""``bci emulate``, ``bci control`` and ``bci bench stim``, and the Ctrl-C emergency stop of
``bci run``: the stimulation side of the command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

from bci.cli_session import EXIT_BAD_INPUT
from bci.engine.control import COMMANDS

DEFAULT_CONTROL = "tcp://127.0.0.1:5557"


def estop_on_ctrl_c(inbox, stop: threading.Event, latched: Callable[[], bool]):
    """Make Ctrl-C an emergency stop: a press zeroes the output (TMS: disarms) and latches it
    while the session keeps recording; a press while the stop is latched ends the session
    cleanly; a press after that aborts. After a re-arm, Ctrl-C is an emergency stop again.

    ``latched()`` tells whether the engine holds an emergency stop now. Returns the previous
    SIGINT handler (restore it with ``signal.signal``).
    """

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        if latched():
            stop.set()
            print("ending the session (the output stays at zero)...", file=sys.stderr)
            return
        inbox.post({"cmd": "estop", "who": "Ctrl-C"})
        print(
            "\nEMERGENCY STOP: output to zero, TMS disarmed, latched; the session keeps "
            "recording.\n  re-arm: bci control rearm --confirm   end the session: Ctrl-C again",
            file=sys.stderr,
            flush=True,
        )

    return signal.signal(signal.SIGINT, handler)


def end_on_signals(inbox, stop: threading.Event) -> dict:
    """Make SIGTERM and SIGHUP (a supervisor, systemd, the console's Stop fallback, a closed
    terminal) end the session as an operator's ``stop`` does: the output ramps to zero within
    ``safety.stop_ramp_s``, the final zero is recorded, the summary is written. A second one
    ends the loop at once (still through the ramp). Returns the previous handlers by signal."""

    def handler(signum, frame) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            return
        if getattr(handler, "asked", False):
            stop.set()
            return
        handler.asked = True
        inbox.post({"cmd": "stop", "who": name})
        try:
            print(f"\n{name}: ending the session (output ramps to zero, summary written)...",
                  file=sys.stderr, flush=True)  # fmt: skip
        except OSError:  # SIGHUP: the terminal may be gone
            pass

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGHUP)}


def cmd_emulate(args) -> int:
    from devices.emulators.pty import print_event

    if args.device == "magstim":
        from devices.emulators.magstim import MagstimEmulator

        emulator = MagstimEmulator(print_event)
    else:
        from devices.emulators.tes import TesEmulator

        emulator = TesEmulator(print_event, impedance_ohm=args.impedance)
    port = emulator.start()
    print(f"{args.device} emulator on {port}\n  try: bci run PROTOCOL --set stimulator.port={port}",
          flush=True)  # fmt: skip
    try:
        threading.Event().wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def cmd_control(args) -> int:
    from bci.engine.control import send_command

    if args.command == "keygen":
        return _keygen(args)
    if args.name is not None:
        print(f"error: only keygen takes a name; got {args.name!r} after {args.command}",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    command = {"cmd": args.command, "who": args.who}
    if args.command == "note":
        if not args.text:
            print("error: a note needs its text: bci control note --text '...'", file=sys.stderr)
            return EXIT_BAD_INPUT
        command["text"] = args.text
    if args.command == "rearm":
        confirmed = args.confirm
        if not confirmed and sys.stdin.isatty():
            answer = input("Re-arm the stimulator? Output may rise again. Type REARM: ")
            confirmed = answer.strip() == "REARM"
        if not confirmed:
            print("not re-armed: re-arming needs --confirm (or typing REARM)", file=sys.stderr)
            return EXIT_BAD_INPUT
        command["confirm"] = True
    try:
        reply = send_command(args.address, command, timeout_s=args.timeout,
                             keys_dir=args.keys_dir, key_name=args.key_name)  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (TimeoutError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def _keygen(args) -> int:
    from bci.engine.control_auth import default_keys_dir
    from bci.engine.control_keys import keygen

    if args.name is None:
        print("error: keygen needs the operator's name: bci control keygen NAME", file=sys.stderr)
        return EXIT_BAD_INPUT
    keys_dir = Path(args.dir).expanduser() if args.dir else default_keys_dir()
    try:
        created = keygen(args.name, keys_dir)
    except (ValueError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in created:
        print(f"wrote {path}")
    print(f"{args.name} may now steer sessions that run with --set control.keys_dir={keys_dir}"
          f"\n  from another machine: copy {keys_dir}/{args.name}.key_secret and "
          f"{keys_dir}/server.key into that machine's keys folder (or run keygen there and "
          f"copy its NAME.key into {keys_dir}/operators/ here)")  # fmt: skip
    return 0


def cmd_bench_stim(args) -> int:
    from bci.bench.stim import run_stim_bench

    result = run_stim_bench(Path(args.json), seconds=args.seconds)
    path = result["phase_path_latency_ms"]
    print(f"phase-locked path, newest sample → serial write ({path['n']} pulses): "
          f"p50 {path['p50']:.3f} ms, p99 {path['p99']:.3f} ms")  # fmt: skip
    for name, acc in result["phase_accuracy"].items():
        print(f"  phase accuracy {name:14s} mean error {acc['mean_error_deg']:+.1f}°, "
              f"PLV {acc['plv']:.2f} (n={acc['n_triggers']})")  # fmt: skip
    cost = result["governor_us_per_command"]
    print(f"  governor: p50 {cost['p50']:.2f} µs, p99 {cost['p99']:.2f} µs per command")
    print(f"→ {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


_CONTROL_HELP = (
    "estop: zero the output (TMS: disarm) now, latched. rearm: lift the emergency stop (needs "
    "--confirm). status: the session's state. stop: end the session. note: record an "
    "operator's note (--text, up to 2000 characters) in the session-info stream. pause: hold "
    "the output at zero and the timeline still; resume: go on.",
    "Who may: anyone who reaches the channel may send estop (an emergency stop is never "
    "refused). The other commands need, on this machine, the session's secret (a file only "
    "the user who started the session can read, found automatically: nothing to type; status "
    "needs none) or, when the session runs with control.keys_dir, an operator key on its "
    "allow-list (a session listening off this machine needs keys; a key not on the "
    "allow-list may only send estop, and what it tried is recorded).",
    "keygen NAME: make operator NAME's CURVE keys in the keys folder (--dir; default "
    "$NEUROLOOP_KEYS_DIR, else ~/.config/neuroloop/keys), allow NAME there, and make the "
    "engine's own keys if the folder has none:",
    "  server.key, server.key_secret   the engine's keypair\n"
    "  operators/NAME.key              the allow-list (public keys)\n"
    "  NAME.key, NAME.key_secret       NAME's own keypair",
    "Then run the session with --set control.keys_dir=FOLDER (and e.g. --set "
    "control.address=tcp://0.0.0.0:5557 to listen on the network). An operator on another "
    "machine needs NAME.key_secret and the engine's server.key in their own keys folder. "
    "Each command records the key's name as who.",
)


def add_stim_parsers(sub, bench_sub) -> None:
    """Add ``emulate``, ``control`` and ``bench stim`` to the ``bci`` parser."""
    emulate = sub.add_parser(
        "emulate", help="emulate a serial stimulator on a pseudo-terminal",
        description="Open a pseudo-terminal that answers like the device (Magstim 200² remote "
        "control, or the NeuroLoop tES protocol), print its port, then one JSON line per "
        "device event (armed, fired, auto-disarm, watchdog, ...). Ctrl-C ends it.",
    )  # fmt: skip
    emulate.add_argument("device", choices=["magstim", "tes"], help="which device")
    emulate.add_argument("--duration", type=float, help="stop after this many seconds")
    emulate.add_argument("--impedance", type=float, default=5000.0,
                         help="tes: electrode impedance reported, Ω (default 5000)")  # fmt: skip
    emulate.set_defaults(func=cmd_emulate)

    control = sub.add_parser(
        "control", help="send an operator command to a running session; make operator keys",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n\n".join(textwrap.fill(part, 88) for part in _CONTROL_HELP[:3])
        + "\n" + _CONTROL_HELP[3] + "\n" + textwrap.fill(_CONTROL_HELP[4], 88),
    )  # fmt: skip
    control.add_argument("command", choices=[*COMMANDS, "keygen"])
    control.add_argument("name", nargs="?", help="keygen: the operator's key name")
    control.add_argument("--address", default=DEFAULT_CONTROL,
                         help="the session's control address (printed at start; default "
                         "%(default)s)")  # fmt: skip
    control.add_argument("--confirm", action="store_true", help="rearm: confirm it")
    control.add_argument("--text", help="note: the operator's note, recorded with the session")
    control.add_argument(
        "--who",
        default="operator",
        help="name recorded with the command (with keys: the key's name)",
    )
    control.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
    control.add_argument("--keys-dir", help="connect with the CURVE key in this folder "
                         "(default: $NEUROLOOP_KEYS_DIR, or what the session on this machine "
                         "uses; off this machine ~/.config/neuroloop/keys)")  # fmt: skip
    control.add_argument("--key-name", help="which operator key in --keys-dir (default "
                         "$NEUROLOOP_KEY_NAME, else the only one)")  # fmt: skip
    control.add_argument("--dir", help="keygen: the keys folder (default $NEUROLOOP_KEYS_DIR, "
                         "else ~/.config/neuroloop/keys)")  # fmt: skip
    control.set_defaults(func=cmd_control)

    stim = bench_sub.add_parser(
        "stim", help="phase-locked path latency, phase accuracy, governor cost (JSON + PNG)",
        description="Runs mu_trough_tms on the virtual subject against the Magstim emulator "
        "(newest sample → serial write of each pulse, and each pulse's phase against the "
        "offline zero-phase truth), the offline phase accuracy of both estimators on five "
        "virtual subjects, and the governor's cost per command.",
    )  # fmt: skip
    stim.add_argument("--json", required=True, help="result file (PNG written beside it)")
    stim.add_argument("--seconds", type=float, default=60.0, help="closed-loop seconds")
    stim.set_defaults(func=cmd_bench_stim)
