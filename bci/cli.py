"""The ``bci`` command: every NeuroLoop entry point for operators and scripts."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from bci.cli_session import EXIT_BAD_INPUT, cmd_check, cmd_demo, cmd_run

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a protocol field, e.g. --set stimulator.limits.max_amplitude=1.5 "
        "or --set blocks.1.trials=20 (repeatable)",
    )  # fmt: skip


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output folder (default sessions/<timestamp>/)")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes")
    parser.add_argument("--note", help="operator's note, recorded with the session")
    _add_set(parser)


def cmd_gui(args) -> int:
    try:
        from gui.app import run_gui
    except ImportError as err:
        print(f"error: the console needs PySide6 and pyqtgraph ({err}): pip install -e '.[gui]'",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    if args.after is not None and not args.screenshot:
        print("error: --after goes with --screenshot PNG", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_gui(args.protocol, args.autostart, args.screenshot,
                   30.0 if args.after is None else args.after, args.replay,
                   args.overrides)  # fmt: skip


def cmd_bench_throughput(args) -> int:
    from bci.bench.throughput import run_throughput_bench

    result = run_throughput_bench(Path(args.json), step_s=args.step_seconds,
                                  hold_minutes=args.hold_minutes,
                                  memory_minutes=args.memory_minutes)  # fmt: skip
    best, hold, memory = result["largest_sustained"], result["hold"], result["memory_session"]
    if best is None:
        print("not sustained even at the first step: see the JSON for drops, trips and latency")
    else:
        print(f"largest sustained: {best['channels']} ch · {best['srate']:g} Hz")
    if hold is not None:
        mem = hold["memory_mb"]
        print(f"held {args.hold_minutes:g} min: sustained={hold['sustained']}, "
              f"{hold['dropped']} dropped, memory {mem['growth']:+.1f} MB "
              f"({mem['per_hour']:+.1f} MB/h)")  # fmt: skip
    if memory is not None:
        print(f"{args.memory_minutes:g}-minute session accelerated {memory['acceleration']:.3g}× "
              f"({memory['latency_ms']['n']} decisions): memory "
              f"{memory['memory_mb']['growth']:+.1f} MB, scaled to the full session "
              f"{memory['growth_per_session_mb']:+.1f} MB")  # fmt: skip
    print(f"→ {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


def cmd_bench_all(args) -> int:
    from bci.bench.report import BENCHMARKS, run_all, write_page

    only = args.only or None
    if only and (unknown := sorted(set(only) - set(BENCHMARKS))):
        print(f"error: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    if args.report_only:
        print(f"→ {write_page(Path(args.out), Path(args.page))}")
        return 0
    errors = run_all(Path(args.out), Path(args.page), quick=args.quick, only=only)
    for name, error in errors.items():
        print(f"{name} failed: {error} (traceback in {args.out}/{name}.error.txt)")
    print(f"→ {args.page}, results in {args.out}/")
    return 1 if errors else 0


def cmd_bench_gui(args) -> int:
    from gui.bench import run_gui_bench

    result = run_gui_bench(Path(args.json), rounds=args.rounds)
    print(f"console: {result['fps']:.0f} fps; engine p99 {result['engine_p99_ms_with_gui']:.2f} "
          f"ms with it, {result['engine_p99_ms_without_gui']:.2f} ms without")  # fmt: skip
    print(f"→ {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


def cmd_simulate(args) -> int:
    from devices.virtual_subject.process import SimulateOptions, run_virtual_subject

    options = SimulateOptions(
        prefix=args.prefix, seed=args.seed, eeg_channels=args.channels, eeg_srate=args.srate,
        fnirs=not args.no_fnirs, sample_index=args.sample_index, bad_channel=args.bad_channel,
        line_freq=args.line_freq, duration_s=args.duration, listen=not args.no_listen,
        chunk_s=args.chunk_ms / 1e3,
    )  # fmt: skip
    stop = threading.Event()
    if args.stop_on_stdin_eof:  # the session that started us is gone, even if it was killed

        def wait_for_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
    run_virtual_subject(options, stop)
    return 0


def cmd_stream_brainflow(args) -> int:
    from devices.brainflow_bridge import BrainFlowBridge, BridgeSettings

    try:
        settings = BridgeSettings(
            board=args.board, serial_port=args.serial_port, name=args.name,
            mac_address=args.mac_address, ip_address=args.ip_address, ip_port=args.ip_port,
        )  # fmt: skip
        bridge = BrainFlowBridge(settings)
        print(f"publishing BrainFlow board {settings.board!r} as LSL stream {settings.name!r}")
        pushed = bridge.run(duration_s=args.duration)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 0
    print(f"pushed {pushed} samples")
    return 0


def cmd_streams(args) -> int:
    from bci.acquire.resolve import describe, list_streams

    infos = list_streams(wait_s=args.wait)
    if not infos:
        print(f"no LSL streams found within {args.wait:g} s")
    for info in infos:
        print(describe(info))
    return 0


def cmd_bench_latency(args) -> int:
    from bci.bench.latency import peers_missing, run_latency_bench

    if args.peers and (missing := peers_missing()):
        print(f"error: --peers: {missing}", file=sys.stderr)
        return 2
    result = run_latency_bench(Path(args.json), seconds=args.seconds, peers=args.peers,
                               calibration_trials=args.calibration_trials)  # fmt: skip
    rows = [(f"neuroloop.{k}", s) for k, s in result["neuroloop"].items()]
    rows += [(f"peers.{k}", s) for k, s in result["peers"].items()]
    print("latency, newest sample → output (64 ch · 1 kHz, decision every 10 ms):")
    for name, lat in rows:
        print(f"  {name:16s} p50 {lat['p50']:7.3f} ms  p99 {lat['p99']:7.3f} ms  "
              f"max {lat['max']:8.3f} ms  n {lat['n']}")  # fmt: skip
    print(f"→ {args.json}")
    return 0


def cmd_bench_decoders(args) -> int:
    from bci.bench.decoders import run_decoder_bench

    result = run_decoder_bench(Path(args.json), quick=args.quick)
    print(f"{result['subjects']} held-out virtual subjects, 20 calibration trials per class:")
    for name, value in result["accuracy"].items():
        spread = result["accuracy_spread"][name]
        print(f"  {name:18s} {value:.1%} (min {spread['min']:.0%}, max {spread['max']:.0%})")
    for name, value in result["inference_ms"].items():
        print(f"  inference {name:8s} p50 {value['p50']:.3f} ms, p99 {value['p99']:.3f} ms")
    print(f"→ {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bci",
        description="NeuroLoop: closed-loop brain-computer interface. EEG/fNIRS in over LSL, "
        "decoded in milliseconds, stimulation out through a safety governor.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo session with a virtual subject (~4 min)",
                          description="Spawn a virtual subject, calibrate a motor-imagery "
                          "decoder, run a closed loop driving simulated tDCS, record everything "
                          "to XDF, write summary.json and summary.png.")  # fmt: skip
    _add_session_options(demo)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run a session protocol",
                         description="Validate PROTOCOL, then run its timeline: source, "
                         "recording, calibration, fit, closed loop.")  # fmt: skip
    run.add_argument("protocol", help="protocol TOML file, or a bundled name (demo, mi_tdcs)")
    _add_session_options(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a protocol without running it",
                           description="Print one line per problem (field, value, what is "
                           "allowed) and exit 2, or a one-line overview and exit 0.")  # fmt: skip
    check.add_argument("protocol", help="protocol TOML file, or a bundled name")
    _add_set(check)
    check.set_defaults(func=cmd_check)

    gui = sub.add_parser("gui", help="the operator console (PySide6)",
                         description="Open the console: session, STOP (Esc/Space), live views, "
                         "streams. With a PROTOCOL it is loaded and validated; --autostart "
                         "starts its session; --replay FILE watches a recording as it "
                         "replays; --screenshot saves the window after --after seconds and "
                         "exits.")  # fmt: skip
    gui.add_argument("protocol", nargs="?", help="protocol file or bundled name (demo)")
    gui.add_argument("--autostart", action="store_true", help="start the protocol's session")
    gui.add_argument("--replay", help="replay this recording (bci replay) and watch it")
    gui.add_argument("--screenshot", help="save a PNG of the window, then exit")
    gui.add_argument("--after", type=float, help="seconds before the screenshot (default 30)")
    _add_set(gui)
    gui.set_defaults(func=cmd_gui)

    sim = sub.add_parser("simulate", help="publish a virtual subject's EEG and fNIRS over LSL",
                         description="Run a virtual subject that streams like an amplifier, "
                         "follows the session's cues and responds to its stimulation.")  # fmt: skip
    sim.add_argument(
        "--prefix", default="NeuroLoop", help="stream-name prefix (default %(default)s)"
    )
    sim.add_argument("--seed", type=int, default=0, help="which subject of the population")
    sim.add_argument(
        "--channels", type=int, default=32, help="EEG channels (8, 16, 32, 64, 128, 256)"
    )
    sim.add_argument("--srate", type=float, default=500.0, help="EEG rate, Hz (250-2000)")
    sim.add_argument("--line-freq", type=float, default=50.0, help="mains frequency, Hz")
    sim.add_argument("--bad-channel", help="make this channel bad (e.g. T7)")
    sim.add_argument("--no-fnirs", action="store_true", help="EEG only")
    sim.add_argument("--sample-index", action="store_true", help="append a SampleIndex channel")
    sim.add_argument("--no-listen", action="store_true", help="ignore cue and stimulation streams")
    sim.add_argument("--chunk-ms", type=float, default=10.0,
                     help="push interval, ms (default 10; amplifiers use 1-40)")  # fmt: skip
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.add_argument("--stop-on-stdin-eof", action="store_true",
                     help="stop when standard input closes (a session's child)")  # fmt: skip
    sim.set_defaults(func=cmd_simulate)

    stream = sub.add_parser("stream", help="bridge an acquisition board to LSL")
    stream_sub = stream.add_subparsers(dest="bridge", required=True, metavar="BRIDGE")
    bf = stream_sub.add_parser("brainflow", help="publish a BrainFlow board as an LSL stream",
                               description="Publish any BrainFlow board (synthetic, cyton, "
                               "ganglion, muse_s, ...) as an LSL EEG stream.")  # fmt: skip
    bf.add_argument("--board", required=True, help="board name, e.g. synthetic, cyton")
    bf.add_argument("--serial-port", default="", help="e.g. /dev/ttyUSB0 or COM3")
    bf.add_argument("--mac-address", default="", help="Bluetooth boards")
    bf.add_argument("--ip-address", default="", help="network boards")
    bf.add_argument("--ip-port", type=int, default=0, help="network boards")
    bf.add_argument("--name", help="LSL stream name (default BrainFlow-<board>)")
    bf.add_argument("--duration", type=float, help="stop after this many seconds")
    bf.set_defaults(func=cmd_stream_brainflow)

    streams = sub.add_parser("streams", help="list the LSL streams on the network")
    streams.add_argument("--wait", type=float, default=1.0, help="seconds to listen (default 1)")
    streams.set_defaults(func=cmd_streams)

    bench = sub.add_parser("bench", help="benchmarks (JSON + PNG)")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    lat = bench_sub.add_parser("latency", help="newest sample → stimulator write latency",
                               description="Virtual subject at 64 ch · 1 kHz in 1 ms chunks: "
                               "NeuroLoop's EEGNet loop (a decision every 10 ms) and its "
                               "phase-locked trigger path, and with --peers the same EEGNet "
                               "loop in Timeflux and MNE-LSL (`make peers` installs them); "
                               "writes JSON and a PNG next to it.")  # fmt: skip
    lat.add_argument("--json", required=True, help="result file (PNG written beside it)")
    lat.add_argument("--seconds", type=float, default=60.0, help="measured time per loop, s")
    lat.add_argument("--peers", action="store_true", help="also run the Timeflux and MNE-LSL peers")
    lat.add_argument("--calibration-trials", type=int, default=16,
                     help="cued trials EEGNet is fitted on first (default 16)")  # fmt: skip
    lat.set_defaults(func=cmd_bench_latency)

    from bci.cli_dose import add_dose_parser
    from bci.cli_replay import add_replay_parsers
    from bci.cli_stim import add_stim_parsers
    from bci.cli_train import add_train_parser

    add_dose_parser(sub)
    add_train_parser(sub)
    add_stim_parsers(sub, bench_sub)
    add_replay_parsers(sub, bench_sub, _add_set)

    thr = bench_sub.add_parser(
        "throughput", help="largest channels x rate sustained without a drop; memory (JSON + PNG)",
        description="Climbs 64 ch · 1 kHz → 128 · 1 k → 128 · 2 k → 256 · 1 k → 256 · 2 k, each "
        "a session with decoding every 10 ms, until a step drops a sample, trips the watchdog "
        "or falls behind; then holds the largest sustained step, and measures the engine's memory "
        "growth over a 30-minute session's decisions made 10/3 times faster (every 3 ms).",
    )  # fmt: skip
    thr.add_argument("--json", required=True, help="result file (a PNG is written beside it)")
    thr.add_argument("--step-seconds", type=float, default=60.0,
                     help="closed-loop seconds of each ladder step (default 60)")  # fmt: skip
    thr.add_argument(
        "--hold-minutes",
        type=float,
        default=10.0,
        help="minutes the largest sustained step is held (default 10; 0 skips)",
    )
    thr.add_argument("--memory-minutes", type=float, default=30.0,
                     help="session minutes of decisions the memory run makes, 10/3 times faster "
                     "(default 30: 9 minutes at 64 ch · 1 kHz; 0 skips)")  # fmt: skip
    thr.set_defaults(func=cmd_bench_throughput)

    ball = bench_sub.add_parser(
        "all", help="every benchmark, then docs/benchmarks.md with figures and plots",
        description="Runs latency, throughput, decoders, stim, replay and gui one after the "
        "other (about 45 min; --quick about 15), each writing OUT/NAME.json and a PNG, then "
        "writes the page with the figures, the machine, the date and the plots. A benchmark "
        "that fails is reported on the page and the others still run.",
    )  # fmt: skip
    ball.add_argument("--out", default="bench", help="folder of the results (default bench)")
    ball.add_argument("--page", default="docs/benchmarks.md", help="the page to write")
    ball.add_argument("--quick", action="store_true", help="shorter runs of every benchmark")
    ball.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    ball.add_argument("--report-only", action="store_true",
                      help="rewrite the page from the results in --out; run nothing")  # fmt: skip
    ball.set_defaults(func=cmd_bench_all)

    bgui = bench_sub.add_parser(
        "gui", help="console frame rate and engine latency with and without it (JSON + PNG)",
        description="Runs the latency benchmark's session (64 ch · 1 kHz) and, in rounds during "
        "its closed loop, the console (its own process) watching every stream with a 10 s EEG "
        "window, then no console: 15 s measured each way per round (about 70 s of "
        "calibration, then 51 s a round). Writes fps and the engine's p99 both ways.",
    )  # fmt: skip
    bgui.add_argument("--json", required=True, help="result file (a PNG is written beside it)")
    bgui.add_argument("--rounds", type=int, default=3, help="rounds with, then without, the "
                      "console (default 3)")  # fmt: skip
    bgui.set_defaults(func=cmd_bench_gui)

    dec = bench_sub.add_parser(
        "decoders", help="accuracy and inference time of every decoder (JSON + PNG)",
        description="Held-out virtual subjects, 20 calibration trials per class, 40 test trials; "
        "transfer variants fine-tune population models pretrained on other subjects (cached "
        "in ~/.cache/neuroloop or $NEUROLOOP_CACHE). Single-window inference on one thread.",
    )  # fmt: skip
    dec.add_argument("--json", required=True, help="result file (a PNG is written beside it)")
    dec.add_argument(
        "--quick",
        action="store_true",
        help="4 subjects and a 20-subject population (about 10 minutes)",
    )
    dec.set_defaults(func=cmd_bench_decoders)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bci`` console command."""
    args = build_parser().parse_args(argv)
    return args.func(args)
