"""``bci emulate``, ``bci control`` and ``bci bench stim``, and the Ctrl-C emergency stop of
``bci run``: the stimulation side of the command line."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from bci.engine.control import COMMANDS

EXIT_BAD_INPUT = 2
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
        reply = send_command(args.address, command, timeout_s=args.timeout)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TimeoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


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
        "control", help="send an operator command to a running session",
        description="estop: zero the output (TMS: disarm) now, latched. rearm: lift the "
        "emergency stop (needs --confirm). status: the session's state. stop: end the session. "
        "note: record an operator's note (--text) in the session-info stream. pause: hold the "
        "output at zero and the timeline still; resume: go on.",
    )  # fmt: skip
    control.add_argument("command", choices=list(COMMANDS))
    control.add_argument("--address", default=DEFAULT_CONTROL,
                         help="the session's control address (printed at start; default "
                         "%(default)s)")  # fmt: skip
    control.add_argument("--confirm", action="store_true", help="rearm: confirm it")
    control.add_argument("--text", help="note: the operator's note, recorded with the session")
    control.add_argument("--who", default="operator", help="name recorded with the command")
    control.add_argument("--timeout", type=float, default=3.0, help="seconds to wait")
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
