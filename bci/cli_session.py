"""``bci check``, ``bci run`` and ``bci demo``: validating and running a session from the
command line, with Ctrl-C as the emergency stop and SIGTERM/SIGHUP as a clean end."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

EXIT_BAD_INPUT = 2


def _load(protocol: str, overrides: list[str]):
    from bci.protocol import ProtocolError, find_protocol, load_protocol

    try:
        loaded, text = load_protocol(protocol, overrides)
    except ProtocolError as err:
        print(f"{err.source}: {len(err.lines)} problem(s)", file=sys.stderr)
        for line in err.lines:
            print(f"  {line}", file=sys.stderr)
        return None
    return loaded, text, str(find_protocol(protocol))


def cmd_check(args) -> int:
    loaded = _load(args.protocol, args.overrides)
    if loaded is None:
        return EXIT_BAD_INPUT
    protocol, _, path = loaded
    from bci.engine.timeline import plan_blocks, planned_duration_s

    blocks = plan_blocks(protocol.blocks, protocol.session.seed, protocol.decoder.classes)
    n_trials = sum(len(b.trials) for b in blocks)
    print(
        f"{path}: OK — {len(blocks)} blocks, {n_trials} cued trials, "
        f"~{planned_duration_s(blocks):.0f} s, {protocol.stimulator.modality} ≤ "
        f"{protocol.stimulator.limits.max_amplitude} ({protocol.stimulator.kind} stimulator)"
    )
    from bci.cli_dose import check_lines

    print("\n".join(f"  {line}" for line in check_lines(protocol)))
    return 0


def cmd_run(args) -> int:
    loaded = _load(args.protocol, args.overrides)
    if loaded is None:
        return EXIT_BAD_INPUT
    protocol, text, path = loaded
    from bci.acquire import StreamNotFoundError
    from bci.cli_stim import end_on_signals, estop_on_ctrl_c
    from bci.engine.control import ControlInbox
    from bci.engine.session import run_session
    from bci.engine.session_files import default_out_dir
    from bci.safety.dose import DoseLimitError

    out = Path(args.out) if args.out else default_out_dir()
    inbox, stop, engines = ControlInbox(), threading.Event(), []
    previous = estop_on_ctrl_c(inbox, stop, lambda: bool(engines) and engines[0].governor.estopped)
    previous_end = end_on_signals(inbox, stop)
    try:
        summary, _ = run_session(protocol, path, text, out, max_minutes=args.minutes, stop=stop,
                                 inbox=inbox, on_engine=engines.append,
                                 overrides=args.overrides, note=args.note)  # fmt: skip
    except (StreamNotFoundError, FileExistsError, DoseLimitError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: stimulation stopped", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}\nStimulation was stopped at zero; what was recorded is in {out}.",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
        for signum, handler in previous_end.items():
            signal.signal(signum, handler)
    print(f"session done in {summary['duration_s']:.0f} s → {out}\n" + session_report(summary))
    return 0


def session_report(summary: dict) -> str:
    """The few lines an operator reads after a session."""
    dec, lat, stim = summary["decoder"], summary["latency_ms"], summary["stimulation"]
    lines = []
    if dec["fit"]:
        fit = dec["fit"]
        how = f"fine-tuned {fit['pretrained']} ({fit['strategy']})" if fit.get("pretrained") \
            else "fitted"  # fmt: skip
        lines.append(
            f"decoder: {dec['kind']} {how} in {fit.get('seconds', float('nan')):.1f} s, "
            f"held-out calibration accuracy {fit.get('holdout_accuracy', float('nan')):.0%}, "
            f"closed loop {dec['closed_loop_accuracy']:.0%} over {dec['n_trials']} trials"
        )
    if stim["controller"] != "phase":  # the phase path's latency is its pulses' (below)
        lines.append(f"latency: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, max "
                     f"{lat['max']:.2f} ms (n={lat['n']})")  # fmt: skip
    unit = stim["unit"]
    line = (f"stimulation ({stim['controller']} → {stim['stimulator']} {stim['modality']}): "
            f"{stim['commands']} commands, max {stim['max_amplitude_ma']:.2f} {unit}")  # fmt: skip
    if unit == "mA":
        line += f", {stim['charge_mC']:.1f} mC"
    if stim["pulses"]:
        pulse = stim["pulse_latency_ms"]
        line += (f", {stim['pulses']} pulses (newest sample → write p50 {pulse['p50']:.2f} ms, "
                 f"p99 {pulse['p99']:.2f} ms)")  # fmt: skip
    lines.append(line + f", {stim['clamped']} clamped, {stim['refused']} refused")
    for key, label in (("estop", "emergency stop"), ("dose_limit", "dose limit")):
        if stim[key]:
            lines.append(f"{label}: {stim[key]}")
    lines.append(f"recording: {(summary['recording'] or {}).get('path', 'off')}")
    return "\n".join("  " + line for line in lines)


def cmd_demo(args) -> int:
    args.protocol = "demo"
    return cmd_run(args)
