"""``bci record``, ``bci replay``, ``bci export`` and ``bci bench replay``."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

EXIT_BAD_INPUT = 2


def _bad_input(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def stream_predicates(names: list[str], types: list[str]) -> list[str]:
    """LabRecorder predicates for ``--name``/``--type`` selections (every stream when none)."""
    from bci.record import name_predicate

    predicates = [name_predicate(name) for name in names]
    for kind in types:
        if "'" in kind:
            raise ValueError(f"stream type {kind!r} contains a quote")
        predicates.append(f"type='{kind}'")
    return predicates or ["true()"]


def cmd_record(args) -> int:
    import pylsl

    from bci.record import Recorder

    out = Path(args.out)
    if out.exists():
        return _bad_input(FileExistsError(f"{out} exists; choose another --out file."))
    try:
        predicates = stream_predicates(args.name, args.type)
    except ValueError as err:
        return _bad_input(err)
    predicate = " or ".join(f"({p})" for p in predicates)
    found = sorted({info.name() for info in pylsl.resolve_bypred(predicate, 0, args.wait)})
    if not found:
        return _bad_input(RuntimeError(
            f"no stream on the network matches {' or '.join(predicates)} within {args.wait:g} s; "
            "`bci streams` lists what is there."))  # fmt: skip
    recorder = Recorder(out, found)
    try:
        recorder.start()
    except (RuntimeError, ValueError) as err:
        return _bad_input(err)
    print(f"recording {', '.join(found)} → {out} (Ctrl-C stops)", flush=True)
    recorder.watch(predicate, lambda names, path: print(
        f"\nrecording new stream(s) {', '.join(names)} → {path}", flush=True))  # fmt: skip
    deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
    try:
        while time.monotonic() < deadline and recorder.recording:
            print(f"\r{recorder.status()}", end="", flush=True)
            threading.Event().wait(min(1.0, max(deadline - time.monotonic(), 0.01)))
    except KeyboardInterrupt:
        pass
    finally:
        alive = recorder.recording
        recorder.stop()
        print(f"\r{recorder.status()}", flush=True)
    if not alive:
        print("error: LabRecorder ended by itself; what it recorded is in the file.",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def cmd_replay(args) -> int:
    from bci.protocol import ProtocolError
    from bci.replay import RecordingError

    try:
        if args.offline:
            return _replay_offline(args)
        if args.json or args.protocol or args.model or args.overrides:
            return _bad_input(ValueError("--json, --protocol, --model and --set belong to "
                                         "--offline replay"))  # fmt: skip
        from bci.replay.player import replay_realtime

        summary = replay_realtime(args.file, speed=args.speed, loop=args.loop,
                                  streams=args.stream or None)  # fmt: skip
    except ProtocolError as err:
        print(f"{err.source}: {len(err.lines)} problem(s)", file=sys.stderr)
        for line in err.lines:
            print(f"  {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RecordingError, ValueError, FileNotFoundError) as err:
        return _bad_input(err)
    print(f"replayed {summary['recording_s']:.1f} s in {summary['wall_s']:.1f} s "
          f"({sum(summary['samples'].values())} samples)")  # fmt: skip
    return 0


def _replay_offline(args) -> int:
    from bci.replay.offline import replay_offline

    if args.loop or args.speed != 1.0:
        return _bad_input(ValueError("--speed and --loop belong to real-time replay; --offline "
                                     "runs as fast as it can"))  # fmt: skip
    result = replay_offline(args.file, args.protocol, args.model, args.overrides)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(offline_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"→ {args.json}")
    return 0


def offline_report(result: dict) -> str:
    """The lines a person reads after an offline replay."""

    def fmt(value) -> str:
        return "n/a (nothing recorded to compare)" if value is None else f"{value:.3g}"

    how = "reproducing the session" if result["reproduces"] else "what-if"
    lines = [
        f"offline replay ({how}): {result['duration_s']:.0f} s of {result['channels']} ch at "
        f"{result['srate']:g} Hz in {result['seconds']['total']:.1f} s "
        f"({result['realtime_factor']:.0f}× real time after loading)",
        f"  decisions: {result['n_decisions']}, decoder max |Δ| vs recorded: "
        f"{fmt(result['decoder_max_abs_diff'])}",
        f"  stimulation: {result['n_commands']} commands ({result['recorded_commands']} "
        f"recorded), max |Δ amplitude| {fmt(result['stim_max_abs_diff'])}",
    ]
    if result.get("accuracy") is not None:
        lines.append(f"  closed-loop trial accuracy: {result['accuracy']:.0%}")
    return "\n".join(lines)


def cmd_export(args) -> int:
    import warnings

    from bci.replay import RecordingError, export_recording

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = export_recording(args.file, args.to, args.out, args.stream)
    except (RecordingError, ValueError, FileExistsError, FileNotFoundError) as err:
        return _bad_input(err)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"→ {out}")
    return 0


def cmd_bench_replay(args) -> int:
    from bci.bench.replay import run_replay_bench

    result = run_replay_bench(Path(args.json), seconds=args.seconds)
    off = result["offline"]
    print(offline_report(off))
    print(f"→ {args.json} and {Path(args.json).with_suffix('.png')}")
    return 0


def add_replay_parsers(sub, bench_sub, add_set) -> None:
    """Add ``record``, ``replay``, ``export`` and ``bench replay`` to the ``bci`` parser."""
    record = sub.add_parser(
        "record", help="record LSL streams to XDF with LabRecorder",
        description="Record the chosen streams (every stream when none is chosen) to XDF with "
        "LabRecorder, showing the file, its size and duration. A matching stream that appears "
        "later is added (as a part file beside the XDF). Ctrl-C stops.",
    )  # fmt: skip
    record.add_argument("--name", action="append", default=[], help="a stream name (repeatable)")
    record.add_argument("--type", action="append", default=[],
                        help="a stream type, e.g. EEG (repeatable)")  # fmt: skip
    record.add_argument("--out", required=True, help="the XDF file to write (must not exist)")
    record.add_argument("--seconds", type=float, help="stop after this many seconds")
    record.add_argument("--wait", type=float, default=2.0,
                        help="seconds to look for the streams (default 2)")  # fmt: skip
    record.set_defaults(func=cmd_record)

    replay = sub.add_parser(
        "replay", help="replay a recording: live over LSL, or offline through the stages",
        description="Real time: re-publish every stream of an XDF (or the channels and "
        "annotations of an EDF, BDF, FIF, BrainVision or SNIRF file) as LSL outlets with their "
        "names, types, channels and timing. --offline: feed the recorded inputs through the "
        "session's own stages as fast as possible and compare the decoder outputs and "
        "stimulation commands with the recorded ones (or, with --model/--set/--protocol, say "
        "what would have changed).",
    )  # fmt: skip
    replay.add_argument("file", help="XDF, EDF, BDF, FIF, BrainVision (.vhdr) or SNIRF file")
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1)")
    replay.add_argument("--loop", action="store_true", help="start over at the end")
    replay.add_argument("--stream", action="append", default=[],
                        help="play only this stream (repeatable)")  # fmt: skip
    replay.add_argument("--offline", action="store_true", help="replay through the stages")
    replay.add_argument("--protocol", help="offline: the protocol (default: the recorded one)")
    replay.add_argument("--model", help="offline: the decoder (default: the session's)")
    replay.add_argument("--json", help="offline: write the result here")
    add_set(replay)
    replay.set_defaults(func=cmd_replay)

    export = sub.add_parser(
        "export", help="convert a recording to FIF or EDF (MNE, EEGLAB)",
        description="The EEG (or chosen) stream as an MNE raw, markers and events as "
        "annotations, written as FIF (lossless) or EDF (16 bit).",
    )  # fmt: skip
    export.add_argument("file", help="XDF, EDF, BDF, FIF, BrainVision (.vhdr) or SNIRF file")
    export.add_argument("--to", required=True, choices=["fif", "edf"], help="output format")
    export.add_argument("--out", help="output file (default: beside the input)")
    export.add_argument("--stream", help="the signal stream to export (default: the EEG)")
    export.set_defaults(func=cmd_export)

    bench = bench_sub.add_parser(
        "replay", help="offline replay of a recorded session: speed and reproduction",
        description="Runs a session (64 ch · 500 Hz virtual subject, tangent-space decoder, "
        "proportional tDCS), records it, replays it offline and measures how fast and how "
        "exactly the decoder outputs and stimulation commands come back (JSON + PNG).",
    )  # fmt: skip
    bench.add_argument("--json", required=True, help="result file (PNG written beside it)")
    bench.add_argument("--seconds", type=float, default=120.0, help="closed-loop seconds")
    bench.set_defaults(func=cmd_bench_replay)
