"""``bci train``: fit, evaluate and pretrain decoders (the command-line side; the work is in
``bci.train`` and ``bci.engine.fitting``). Heavy modules are imported inside the commands so
that ``bci --help`` stays fast."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bci.cli_session import EXIT_BAD_INPUT


def _train_request(args):
    from bci.train.commands import TrainRequest
    from bci.train.settings import parse_events

    return TrainRequest(
        paths=tuple(Path(path) for path in args.data), events=parse_events(args.events),
        kind=args.decoder, protocol=args.protocol, overrides=tuple(args.overrides),
        picks=args.picks, tmin=args.tmin, tmax=args.tmax, window_s=args.window,
        nirs_window_s=args.nirs_window,
        pretrained=Path(args.pretrained) if args.pretrained else None,
        strategy=getattr(args, "fine_tune", None), cv_folds=args.cv,
        holdout=getattr(args, "holdout", None),
    )  # fmt: skip


def _bad_training_input(run) -> int:
    """Run a training command; bad files or options end in one message and exit code 2."""
    from bci.protocol import ProtocolError
    from bci.train import TrainingInputError

    try:
        return run()
    except ProtocolError as err:
        print(f"error: {err.source}: {len(err.lines)} problem(s)", file=sys.stderr)
        for line in err.lines:
            print(f"  {line}", file=sys.stderr)
    except TrainingInputError as err:
        print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def cmd_train_fit(args) -> int:
    def run() -> int:
        from bci.train.commands import fit_files

        s = fit_files(_train_request(args), Path(args.model))
        per_class = ", ".join(f"{k} {v}" for k, v in s["n_trials_per_class"].items())
        inputs = "; ".join(
            f"{name} {len(spec['ch_names'])} ch at {spec['sfreq']:g} Hz, {spec['window_s']:g} s "
            "windows" for name, spec in s["inputs"].items()
        )  # fmt: skip
        held = "none held out (--holdout 0); probabilities not calibrated"
        if s["n_holdout_trials"]:
            held = (
                f"{_percent(s['holdout_accuracy'])} over {s['n_holdout_trials']} trials; "
                f"temperature {s['temperature']:.2f}"
            )
        cv = "skipped (--cv 0)"
        if s["cv_folds"]:
            cv = f"{_percent(s['cv_accuracy'])} ({s['cv_folds']} folds)"
        print(
            f"trained {s['decoder']} on {s['n_trials']} trials ({per_class}; "
            f"{s['n_trials_dropped']} dropped) in {s['seconds']:.0f} s → {s['model']}\n"
            f"  inputs: {inputs}\n"
            f"  cross-validated trial accuracy: {cv}\n"
            f"  held-out trial accuracy: {held}\n"
            f"  report: {s['report']}"
        )
        return 0

    return _bad_training_input(run)


def cmd_train_evaluate(args) -> int:
    def run() -> int:
        from bci.train.commands import evaluate_files

        r = evaluate_files(_train_request(args), Path(args.json), args.model)
        low, high = r["ci95"]
        how = f"{r['cv_folds']}-fold cross-validation" if args.model is None else args.model
        print(
            f"{how}: trial accuracy {r['accuracy']:.0%} over {r['n_trials']} trials "
            f"(95 % CI {low:.0%}–{high:.0%}; chance {r['chance']:.0%}) → {args.json}"
        )
        return 0

    return _bad_training_input(run)


def _seeds(text: str) -> list[int]:
    """``100-139`` or ``100,101,105``."""
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-", 1))
            seeds = list(range(low, high + 1))
        else:
            seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; give a range 100-139 or a list 1,2,3"
        ) from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"got {text!r}; seeds are integers >= 0")
    return seeds


def cmd_train_pretrain(args) -> int:
    from bci.protocol import ProtocolError, load_protocol
    from bci.train.pretrain import HELD_OUT_SEEDS, file_digest, pretrain

    try:
        # the protocol's own model is what is being built: ignore it
        protocol, _ = load_protocol(args.protocol, [*args.overrides, "decoder.model="])
    except ProtocolError as err:
        print(f"error: {err.source}: {len(err.lines)} problem(s)", file=sys.stderr)
        for line in err.lines:
            print(f"  {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    reserved = sorted(set(args.subjects) & set(HELD_OUT_SEEDS))
    if reserved and not args.allow_held_out:
        print(f"error: --subjects includes {reserved}, reserved for sessions and benchmarks "
              f"(seeds {HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.stop - 1}); pick others or pass "
              "--allow-held-out", file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    if args.decoder in ("fnirs", "hybrid") and not protocol.source.fnirs:
        print("error: the protocol's source has no fNIRS", file=sys.stderr)
        return EXIT_BAD_INPUT
    start = time.perf_counter()
    decoder = pretrain(protocol, args.decoder, args.subjects, args.trials)
    out = decoder.save(Path(args.out))
    history = getattr(decoder, "history", None) or []
    best = getattr(decoder, "best_epoch", None)
    print(
        f"pretrained {args.decoder} on {len(args.subjects)} virtual subjects × {args.trials} "
        f"trials in {time.perf_counter() - start:.0f} s → {out} "
        f"({out.stat().st_size / 1e3:.0f} kB, "
        f"sha256 {file_digest(out)[:12]})"
        + (f"\n  best epoch {best} of {len(history)}: validation accuracy "
           f"{history[best]['val_accuracy']:.0%}" if history and best is not None else "")
    )  # fmt: skip
    return 0


def _folds(text: str) -> int:
    value = int(text)
    if value == 1 or not 0 <= value <= 20:
        raise argparse.ArgumentTypeError(f"got {value}; give 0 (none) or 2-20 folds")
    return value


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="FILE",
        help="recordings: EDF, BDF, GDF, FIF, BrainVision (.vhdr), EEGLAB (.set), SNIRF, or XDF "
        "(LabRecorder/NeuroLoop sessions: EEG stream by type EEG, fNIRS by type NIRS, cues from "
        "the Markers streams)",
    )  # fmt: skip
    parser.add_argument(
        "--events", action="append", required=True, metavar="CODE=label,...",
        help="which events are trials of which class: annotation descriptions, marker strings "
        "or trigger values, e.g. 769=left,770=right or T1=left,T2=right or left=left,right=right",
    )  # fmt: skip
    parser.add_argument(
        "--protocol", metavar="P",
        help="take preprocessing and decoder settings from this protocol (default: the "
        "built-in defaults: CAR, 50 Hz notch, 8-30 Hz, 1 s windows)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set preprocessing.notch_hz=60 or --set "
        "preprocessing.bandpass_hz=[8,30] (repeatable; without --protocol only preprocessing.* "
        "and decoder.*)",
    )  # fmt: skip
    parser.add_argument(
        "--picks", metavar="CH,CH,...",
        help="EEG channels the decoder reads, or 'all' (default: the protocol's; without "
        "--protocol C3,Cz,C4 when every file has them, else every EEG channel)",
    )  # fmt: skip
    parser.add_argument(
        "--decoder", metavar="KIND",
        help="eegnet, shallow, snn, riemann, csp, fnirs or hybrid (default: the protocol's, "
        "riemann)",
    )  # fmt: skip
    parser.add_argument(
        "--tmin", type=float,
        help="epoch start after each event, s (default 0.5; fNIRS-only decoders 0)",
    )  # fmt: skip
    parser.add_argument(
        "--tmax", type=float,
        help="epoch end after each event, s (default 2.5; fNIRS-only decoders 8)",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=float, metavar="S",
        help="EEG window, s (default: the protocol's preprocessing.window_s, 1)",
    )  # fmt: skip
    parser.add_argument(
        "--nirs-window", type=float, metavar="S",
        help="fNIRS window, s (default: the protocol's decoder.nirs_window_s, 5)",
    )  # fmt: skip
    parser.add_argument(
        "--pretrained", metavar="MODEL",
        help="fine-tune this model file instead of training from scratch; the files must have "
        "its channels (a superset is fine) at its rate",
    )  # fmt: skip


def add_train_parser(sub) -> None:
    """Add ``train fit|evaluate|pretrain`` to the ``bci`` subcommands."""
    train = sub.add_parser("train", help="train and evaluate decoders from recorded files")
    train_sub = train.add_subparsers(dest="train", required=True, metavar="STEP")
    fit = train_sub.add_parser(
        "fit", help="train a decoder on recordings and write a model file",
        description="Read the recordings, run them through the same causal preprocessing the "
        "engine uses online, cut windows around the chosen events and train. Trial-level "
        "accuracy is cross-validated on every trial; then the decoder is trained on all but a "
        "held-out share of trials, on which its confidence is calibrated. The model file runs "
        "in `bci run` (decoder.model in a protocol).",
    )  # fmt: skip
    _add_train_options(fit)
    fit.add_argument("--model", required=True, metavar="OUT", help="model file to write (.npz)")
    fit.add_argument(
        "--cv", type=_folds, metavar="K",
        help="cross-validation folds reported before training (default: the protocol's "
        "decoder.cv_folds, 5; 0 skips it, which saves time with the neural decoders)",
    )  # fmt: skip
    fit.add_argument(
        "--holdout", type=float, metavar="FRACTION",
        help="share of each class's trials held out to measure accuracy and calibrate "
        "confidence (default: the protocol's decoder.holdout, 0.25; 0: none)",
    )  # fmt: skip
    fit.add_argument(
        "--fine-tune", choices=("head", "full"),
        help="with --pretrained: retrain the classifier layer only (head) or every weight "
        "(full; default: the protocol's decoder.fine_tune)",
    )  # fmt: skip
    fit.set_defaults(func=cmd_train_fit)

    evaluate = train_sub.add_parser(
        "evaluate", help="trial-level accuracy of a model on recordings (or cross-validated)",
        description="Score a model file on recordings, or cross-validate a decoder within "
        "them. A trial's prediction is the class of highest mean probability over its windows. "
        "Writes JSON: accuracy, n_trials, chance (majority-class share), ci95 (Wilson).",
    )  # fmt: skip
    _add_train_options(evaluate)
    evaluate.add_argument("--json", required=True, metavar="OUT", help="result file to write")
    scored = evaluate.add_mutually_exclusive_group(required=True)
    scored.add_argument("--model", metavar="M", help="model file to score")
    scored.add_argument(
        "--cv", type=_folds, metavar="K",
        help="instead of a model: K-fold cross-validation within the files (whole trials)",
    )  # fmt: skip
    evaluate.set_defaults(func=cmd_train_evaluate)

    pre = train_sub.add_parser(
        "pretrain", help="pretrain a population model on virtual subjects",
        description="Cue each virtual subject through the protocol's calibration block offline, "
        "preprocess as the engine does, align each subject to itself and train one decoder on "
        "all of them. A protocol with decoder.model = OUT then fine-tunes it on its own "
        "calibration block. Deterministic: the same command writes the same weights.",
    )  # fmt: skip
    pre.add_argument("--protocol", default="demo",
                     help="protocol whose montage, preprocessing and cue timing the model serves "
                     "(default demo)")  # fmt: skip
    pre.add_argument("--decoder", default="eegnet",
                     choices=("eegnet", "shallow", "snn", "riemann", "csp", "fnirs", "hybrid"),
                     help="decoder family (default eegnet)")  # fmt: skip
    pre.add_argument("--subjects", type=_seeds, default=list(range(100, 140)),
                     help="virtual subject seeds, 100-139 (default) or 1,2,3")  # fmt: skip
    pre.add_argument("--trials", type=int, default=80, help="trials per subject (default 80)")
    pre.add_argument("--out", required=True, help="model file to write (.npz)")
    pre.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                     help="override a protocol field")  # fmt: skip
    pre.add_argument(
        "--allow-held-out",
        action="store_true",
        help="allow seeds 0-99, which benchmarks and sessions use as new subjects",
    )
    pre.set_defaults(func=cmd_train_pretrain)
