"""``bci bench decoders``: accuracy with a short calibration on held-out virtual subjects, and
single-window inference time, for every decoder family.

Each held-out subject is cued through 80 trials of the demo protocol's calibration block; the
first 40 (20 per class) calibrate, the last 40 test, like a session's calibration block and
closed loop. Every variant is fitted by the engine's own :func:`~bci.engine.fitting.fit_decoder`
(the same hold-out for temperature scaling), so the figures are what a session gets. Transfer
variants fine-tune a population model pretrained on disjoint virtual subjects
(:data:`~bci.train.pretrain.POPULATION_SEEDS`), cached by everything that defines it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bci.bench import machine_info
from bci.decode import DECODERS, Decoder, DecoderInfo, InputSpec, select_inputs
from bci.engine.fitting import fit_decoder, session_info
from bci.protocol import Protocol, load_protocol
from bci.train.population import simulate_calibration
from bci.train.pretrain import (
    HELD_OUT_SEEDS,
    POPULATION_SEEDS,
    POPULATION_TRIALS,
    pretrain,
    simulate_population,
)

CALIBRATION_TRIALS_PER_CLASS = 20
TEST_TRIALS = 40
VARIANTS = {
    # name: (decoder kind, pretrained?)
    "eegnet_scratch": ("eegnet", False),
    "eegnet_transfer": ("eegnet", True),
    "shallow_transfer": ("shallow", True),
    "snn_transfer": ("snn", True),
    "riemann_ts_lr": ("riemann", False),
    "csp_lda": ("csp", False),
    "fnirs": ("fnirs", False),
    "hybrid": ("hybrid", False),
}
PRETRAIN_ALIGNMENT = {"eegnet": "euclidean", "shallow": "euclidean", "snn": "none"}
"""Per-subject alignment of each population model. The SNN reads per-channel band power, which
Euclidean whitening mixes across channels: it scored 0.73-0.75 aligned, 0.81-0.82 unaligned."""
TIMED = {"eegnet": "eegnet", "shallow": "shallow", "snn": "snn", "riemann_ts_lr": "riemann"}
"""Single-window inference timing: result name → decoder kind."""


def cache_dir() -> Path:
    """Where pretrained population models are kept (``$NEUROLOOP_CACHE`` or ~/.cache)."""
    root = os.environ.get("NEUROLOOP_CACHE") or Path.home() / ".cache" / "neuroloop"
    return Path(root) / "models"


def population_models(protocol: Protocol, kinds, seeds, n_trials: int,
                      progress: bool = True) -> dict[str, Path]:  # fmt: skip
    """Pretrained models of each of ``kinds`` for ``protocol``, from the cache or trained now
    (on one simulation of the population)."""
    paths = {kind: _cached_model_path(protocol, kind, seeds, n_trials) for kind in kinds}
    missing = [kind for kind, path in paths.items() if not path.exists()]
    subjects = simulate_population(protocol, seeds, n_trials, progress) if missing else []
    for kind in missing:
        path = paths[kind]
        path.parent.mkdir(parents=True, exist_ok=True)
        decoder = pretrain(protocol, kind, seeds, n_trials, PRETRAIN_ALIGNMENT[kind],
                           progress=progress, subjects=subjects)  # fmt: skip
        tmp = path.with_suffix(".tmp")
        decoder.save(tmp)
        tmp.replace(path)
    return paths


def _cached_model_path(protocol: Protocol, kind: str, seeds, n_trials: int) -> Path:
    """Where the model pretrained for exactly these settings is cached."""
    key = json.dumps(
        {
            "kind": kind,
            "preprocessing": protocol.preprocessing.model_dump(mode="json"),
            "source": protocol.source.model_dump(mode="json", include={"eeg_channels",
                                                                       "eeg_srate", "fnirs"}),
            "decoder": protocol.decoder.model_dump(mode="json", exclude={"model", "kind"}),
            "blocks": [b.model_dump(mode="json") for b in protocol.blocks],
            "seeds": list(seeds),
            "trials": n_trials,
            "config": DECODERS[kind]().config(),
            "alignment": PRETRAIN_ALIGNMENT[kind],
        },
        sort_keys=True,
    )  # fmt: skip
    return cache_dir() / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def _variant_protocol(protocol: Protocol, kind: str, model: Path | None) -> Protocol:
    # a pretrained model keeps the alignment it was trained with
    update = {"kind": kind, "model": None if model is None else str(model)}
    if model is not None:
        update["alignment"] = None
    return protocol.model_copy(update={"decoder": protocol.decoder.model_copy(update=update)})


def evaluate_subject(protocol: Protocol, seed: int, models: dict[str, Path]) -> dict[str, dict]:
    """Accuracy of every variant on one held-out subject: {variant: {accuracy, fit_s}}."""
    n_cal = 2 * CALIBRATION_TRIALS_PER_CLASS
    data = simulate_calibration(protocol, seed, n_cal + TEST_TRIALS, order_seed=1000 + seed)
    calibration = data.trials(np.arange(n_cal))
    test = data.trials(np.arange(n_cal, n_cal + TEST_TRIALS))
    results = {}
    for name, (kind, transfer) in VARIANTS.items():
        variant = _variant_protocol(protocol, kind, models.get(kind) if transfer else None)
        info = session_info(variant, data.eeg_sfreq, data.nirs_ch_names, data.nirs_sfreq)
        decoder, report = fit_decoder(
            variant, calibration.windows, calibration.labels, calibration.groups, info
        )
        proba = decoder.predict_proba(select_inputs(info, test.windows))
        predicted = np.asarray(info.classes)[proba.argmax(axis=1)]
        results[name] = {
            "accuracy": float(np.mean(predicted == test.labels)),
            "fit_s": report.seconds,
        }
    return results


def time_inference(decoder: Decoder, window, n: int = 2000) -> dict[str, float]:
    """p50/p99 of one-window ``predict_proba`` calls on one thread, ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(100):
            decoder.predict_proba(window)
        durations = np.empty(n)
        for i in range(n):
            start = time.perf_counter_ns()
            decoder.predict_proba(window)
            durations[i] = (time.perf_counter_ns() - start) / 1e6
    finally:
        torch.set_num_threads(threads)
    return {"p50": float(np.percentile(durations, 50)), "p99": float(np.percentile(durations, 99))}


def inference_at(n_channels: int, sfreq: float, window_s: float = 1.0) -> dict[str, dict]:
    """Single-window inference of every timed family at a montage size (briefly trained on
    random windows: timing does not depend on the weights)."""
    rng = np.random.default_rng(0)
    n_samples = round(window_s * sfreq)
    names = tuple(f"E{i}" for i in range(n_channels))
    info = DecoderInfo(("left", "right"), eeg=InputSpec(names, sfreq, window_s))
    windows = rng.standard_normal((16, n_samples, n_channels))
    labels = np.array(["left", "right"] * 8)
    timings = {}
    for name, kind in TIMED.items():
        quick = {"epochs": 1, "validation": 0.0} if kind in ("eegnet", "shallow", "snn") else {}
        decoder = DECODERS[kind](**quick).fit(windows, labels, info)
        timings[name] = time_inference(decoder, windows[:1])
    return timings


def run_decoder_bench(json_path: Path, quick: bool = False, progress: bool = True) -> dict:
    """Run the benchmark; writes ``json_path`` and a PNG beside it.

    ``quick``: 4 held-out subjects and a 20-subject population (about 10 minutes on 2 cores
    when the population models are not cached yet); otherwise 10 subjects and 40.
    """
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    protocol, _ = load_protocol("demo", ["decoder.model=", "decoder.alignment=euclidean"])
    n_subjects = 4 if quick else 10
    seeds = list(HELD_OUT_SEEDS)[:n_subjects]
    population = list(POPULATION_SEEDS)[: 20 if quick else len(POPULATION_SEEDS)]
    started = time.perf_counter()
    models = population_models(
        protocol, ("eegnet", "shallow", "snn"), population, POPULATION_TRIALS, progress
    )
    pretrain_s = time.perf_counter() - started
    per_subject = {}
    for seed in tqdm(seeds, desc="held-out subjects", unit="subject", disable=not progress):
        per_subject[seed] = evaluate_subject(protocol, seed, models)
    accuracy = {
        name: float(np.mean([r[name]["accuracy"] for r in per_subject.values()]))
        for name in VARIANTS
    }
    spread = {
        name: {
            "std": float(np.std([r[name]["accuracy"] for r in per_subject.values()])),
            "min": float(np.min([r[name]["accuracy"] for r in per_subject.values()])),
            "max": float(np.max([r[name]["accuracy"] for r in per_subject.values()])),
        }
        for name in VARIANTS
    }
    fit_s = {
        name: float(np.max([r[name]["fit_s"] for r in per_subject.values()])) for name in VARIANTS
    }
    pre = protocol.preprocessing
    demo_montage = len(pre.picks), protocol.source.eeg_srate
    result = {
        "subjects": n_subjects,
        "calibration_trials_per_class": CALIBRATION_TRIALS_PER_CLASS,
        "accuracy": accuracy,
        "inference_ms": inference_at(64, 500.0),
        "inference_ms_demo_montage": inference_at(*demo_montage),
        "accuracy_spread": spread,
        "accuracy_per_subject": {
            str(seed): {name: r[name]["accuracy"] for name in VARIANTS}
            for seed, r in per_subject.items()
        },
        "fit_seconds_max": fit_s,
        "config": {
            "protocol": "demo",
            "held_out_seeds": seeds,
            "population_seeds": [population[0], population[-1]],
            "population_trials": POPULATION_TRIALS,
            "test_trials": TEST_TRIALS,
            "accuracy": "per decision window of the test trials, mean over subjects",
            "inference": "one window, one thread; inference_ms at 64 ch x 500 Hz x 1 s, "
            f"inference_ms_demo_montage at {demo_montage[0]} ch x {demo_montage[1]:g} Hz x 1 s",
            "hybrid": "riemann EEG + fNIRS, late fusion weights learned on calibration",
            "pretrain_s": pretrain_s,
            "models": {kind: str(path) for kind, path in models.items()},
        },
        "machine": machine_info(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - started,
    }
    json_path.write_text(json.dumps(result, indent=2))
    plot_decoder_bench(result, json_path.with_suffix(".png"))
    return result


def plot_decoder_bench(result: dict, path: Path) -> Path:
    """Accuracy per variant (mean, each subject as a dot) and inference p50/p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_inf) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=(2, 1))
    names = list(result["accuracy"])
    ax_acc.bar(names, [result["accuracy"][n] for n in names], color="#4c78a8", alpha=0.7)
    for i, name in enumerate(names):
        dots = [subject[name] for subject in result["accuracy_per_subject"].values()]
        ax_acc.scatter(np.full(len(dots), i), dots, color="k", s=12, zorder=3)
    ax_acc.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    ax_acc.set_ylim(0.3, 1.0)
    ax_acc.set_ylabel("test accuracy (decision windows)")
    ax_acc.set_title(
        f"{result['subjects']} held-out virtual subjects, "
        f"{result['calibration_trials_per_class']} calibration trials per class"
    )
    ax_acc.tick_params(axis="x", rotation=30)
    ax_acc.legend(loc="lower right")
    timed = list(result["inference_ms"])
    x = np.arange(len(timed))
    for offset, stat in ((-0.2, "p50"), (0.2, "p99")):
        ax_inf.bar(x + offset, [result["inference_ms"][n][stat] for n in timed], 0.4, label=stat)
    ax_inf.axhline(1.0, color="r", ls="--", lw=1, label="1 ms target (EEGNet)")
    ax_inf.set_xticks(x, timed)
    ax_inf.set_ylabel("ms per window")
    ax_inf.set_title("one window (64 ch · 500 Hz · 1 s), one thread")
    ax_inf.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
