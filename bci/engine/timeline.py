"""The block timeline of a session: baseline, calibration with randomized cues, fit, closed
loop, rest. Pure: built from the protocol before the session starts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bci.protocol import Block
from bci.streams import CUE_CLASSES


@dataclass(frozen=True)
class Trial:
    """One cued imagery period, relative to its block's start."""

    onset_s: float
    label: str
    stop_s: float


@dataclass(frozen=True)
class PlannedBlock:
    """A block with its duration and trials resolved."""

    index: int
    kind: str
    duration_s: float
    trials: tuple[Trial, ...]
    stimulate: bool


def _trials(n: int, block: Block, rng: np.random.Generator, classes) -> tuple[Trial, ...]:
    # balanced classes in random order, so a calibration block is never lopsided
    labels = np.resize(np.array(classes), n)
    rng.shuffle(labels)
    trials, t = [], float(rng.uniform(*block.iti_s))
    for label in labels:
        trials.append(Trial(t, str(label), t + block.cue_s))
        t += block.cue_s + float(rng.uniform(*block.iti_s))
    return tuple(trials)


def plan_blocks(blocks: list[Block], seed: int, classes=CUE_CLASSES) -> list[PlannedBlock]:
    """Resolve each block's duration and its randomized, class-balanced cue schedule.

    Calibration blocks last as long as their trials; cued closed-loop blocks with
    ``trials = 0`` hold as many cued trials as fit in ``duration_s``; fit blocks last as long
    as fitting takes.
    """
    rng = np.random.default_rng(seed)
    planned = []
    for index, block in enumerate(blocks):
        trials: tuple[Trial, ...] = ()
        duration = block.duration_s
        if block.kind == "calibration":
            trials = _trials(block.trials, block, rng, classes)
            duration = (trials[-1].stop_s + block.iti_s[0]) if trials else 0.0
        elif block.kind == "closed_loop" and block.cued:
            n = block.trials or int(duration // (block.cue_s + float(np.mean(block.iti_s))))
            trials = tuple(t for t in _trials(n, block, rng, classes) if t.stop_s <= duration)
        planned.append(PlannedBlock(index, block.kind, duration, trials, block.stimulate))
    return planned


def planned_duration_s(blocks: list[PlannedBlock]) -> float:
    """Total planned time, s (fit blocks counted as zero)."""
    return float(sum(block.duration_s for block in blocks))


def seconds_until_fit(protocol) -> float:
    """Longest stretch of preprocessed signal a fit or a baseline reference may need: every
    block up to the last fit or baseline (calibration blocks at their longest), plus a
    margin, s."""
    kinds = [block.kind for block in protocol.blocks]
    wanted = "fit" if protocol.uses_decoder else "baseline"
    last_fit = len(kinds) - kinds[::-1].index(wanted) if wanted in kinds else 0
    total = sum(
        block.duration_s + block.trials * (block.cue_s + max(block.iti_s))
        for block in protocol.blocks[:last_fit]
    )
    return total + 30.0
