"""The session protocol: a TOML file validated by this schema before anything starts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bci.protocol.stimulation import (
    ControllerSection,
    ControlSection,
    ProportionalSection,
    SafetySection,
    StimulatorSection,
)
from bci.safety.ledger import PARTICIPANT_PATTERN, PARTICIPANT_RULE
from bci.streams import CUE_CLASSES

PositiveSeconds = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    # a typo in a field name is an error, not a silently ignored setting
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionSection(_Strict):
    name: str = "session"
    """Human-readable session name; used in file names."""
    prefix: str = "NeuroLoop"
    """Prefix of every stream name of the session (``<prefix>-EEG``, ``<prefix>-Decoder``, ...)."""
    seed: int = 0
    """Seed of the randomized cue order."""
    operator_notes: str = ""
    """Free text recorded with the session."""
    participant: str = ""
    """Pseudonymous participant id (``P017``): the dose ledger sums the participant's dose over
    24 h across sessions. Required unless the stimulator is ``simulated``; "" with a simulated
    stimulator: no ledger."""

    @field_validator("participant")
    @classmethod
    def _participant_id(cls, value: str) -> str:
        if value and not PARTICIPANT_PATTERN.fullmatch(value):
            raise ValueError(f"got {value!r}; must be {PARTICIPANT_RULE}")
        return value


class SourceSection(_Strict):
    kind: Literal["virtual", "lsl"] = "virtual"
    """``virtual`` spawns the virtual subject; ``lsl`` resolves streams already on the network."""
    seed: int = 0
    """Virtual subject: which member of the simulated population."""
    eeg_channels: Literal[8, 16, 32, 64, 128, 256] = 32
    """Virtual subject: EEG montage size (10-20/10-10 names)."""
    eeg_srate: Annotated[float, Field(ge=250, le=2000)] = 500.0
    """Virtual subject: EEG sampling rate, Hz."""
    fnirs: bool = True
    """Virtual subject: also publish fNIRS."""
    line_freq: Literal[50, 60] = 50
    """Virtual subject: mains frequency, Hz."""
    listen: bool = True
    """Virtual subject: follow the session's cues and feel its stimulation (false: resting EEG
    untouched by pulses, to score phase accuracy without stimulation artifacts)."""
    sample_index: bool = False
    """Virtual subject: append a sample-index channel (tests)."""
    chunk_s: Annotated[float, Field(ge=0.001, le=0.05)] = 0.01
    """Virtual subject: push interval, s. Amplifiers differ (1-40 ms); a decision's newest
    sample is on average half a chunk older than the moment the chunk arrives."""
    eeg_stream: str | None = None
    """lsl: name of the EEG stream to resolve (default ``<prefix>-EEG``)."""
    nirs_stream: str | None = None
    """lsl: name of the fNIRS stream to resolve, if any."""
    eeg_source_id: str | None = None
    """lsl: LSL source id of the EEG stream, when several streams share its name."""
    resolve_timeout_s: PositiveSeconds = 15.0
    """How long to wait for the source streams, s."""


class PreprocessingSection(_Strict):
    picks: list[str] = Field(default_factory=lambda: ["C3", "Cz", "C4"], min_length=2)
    """EEG channels the decoder reads, by name."""
    car: bool = True
    """Common average reference over all EEG channels before picking."""
    notch_hz: Literal[50, 60] | None = 50
    """Mains notch, Hz (None: off)."""
    bandpass_hz: tuple[float, float] = (8.0, 30.0)
    """Band-pass edges, Hz (mu and beta by default)."""
    filter_order: Annotated[int, Field(ge=1, le=8)] = 4
    """Butterworth order."""
    window_s: Annotated[float, Field(gt=0.1, le=10)] = 1.0
    """Decoder window length, s."""
    hop_s: Annotated[float, Field(gt=0, le=5)] = 0.1
    """Time between decisions, s."""

    @model_validator(mode="after")
    def _band_is_ordered(self):
        if len(set(self.picks)) != len(self.picks):
            raise ValueError(f"picks: got {self.picks}; each channel may appear once")
        low, high = self.bandpass_hz
        if not 0 < low < high:
            raise ValueError(
                f"bandpass_hz: got {[low, high]}; need [low, high] with 0 < low < high"
            )
        return self


class DecoderSection(_Strict):
    kind: Literal["riemann", "csp", "eegnet", "shallow", "snn", "fnirs", "hybrid"] = "riemann"
    """Decoder family: ``riemann`` tangent space + logistic regression (pyRiemann), ``csp`` CSP +
    LDA, ``eegnet`` / ``shallow`` CNNs, ``snn`` spiking network (snnTorch, NIR-exportable),
    ``fnirs`` HbO/HbR features + LDA, ``hybrid`` EEG + fNIRS late fusion."""
    model: str | None = None
    """Pretrained model file (``bci train pretrain``), relative to the protocol file; the
    calibration block fine-tunes it. None or empty (``--set decoder.model=``): train from the
    calibration block alone."""
    fine_tune: Literal["head", "full"] = "full"
    """With ``model``: ``head`` retrains the classifier layer only; ``full`` every weight with a
    small learning rate and early stopping (CNN, SNN). Classical decoders refit either way."""
    alignment: Literal["none", "euclidean", "riemann"] | None = None
    """Per-subject alignment of EEG windows (Euclidean: He & Wu 2019; Riemannian re-centering:
    Zanini et al. 2018). None: the model file's, or ``none`` without a model."""
    holdout: Annotated[float, Field(ge=0, le=0.5)] = 0.25
    """Share of calibration trials held out to measure accuracy and fit the temperature of the
    probabilities (0: train on every trial, uncalibrated probabilities)."""
    classes: tuple[str, str] = CUE_CLASSES
    """Class labels, in probability-column order."""
    epoch_tmin_s: Annotated[float, Field(ge=0)] = 0.5
    """Calibration epoch start after the cue, s."""
    epoch_tmax_s: Annotated[float, Field(gt=0)] = 2.5
    """Calibration epoch end after the cue, s."""
    nirs_window_s: Annotated[float, Field(gt=0, le=30)] = 5.0
    """fNIRS window (``fnirs``, ``hybrid``): the HbO/HbR seconds up to each decision, s."""
    cv_folds: Annotated[int, Field(ge=2, le=10)] = 5
    """Cross-validation folds ``bci train fit`` reports (sessions report held-out accuracy)."""

    @field_validator("model", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value


class Block(_Strict):
    kind: Literal["baseline", "calibration", "fit", "closed_loop", "rest"]
    """Block type."""
    duration_s: Annotated[float, Field(ge=0)] = 0.0
    """Length of baseline, closed-loop and rest blocks, s (calibration: set by its trials)."""
    trials: Annotated[int, Field(ge=0)] = 0
    """Calibration: number of cued trials, balanced over the classes. Closed loop: 0 means
    as many as fit in ``duration_s``."""
    cue_s: Annotated[float, Field(gt=0)] = 2.5
    """Imagery period after each cue, s."""
    iti_s: tuple[float, float] = (1.0, 1.5)
    """Rest between trials, drawn uniformly from this range, s."""
    stimulate: bool = True
    """Closed loop: drive the stimulator (False: decode only, sham)."""
    cued: bool = True
    """Closed loop: cue motor-imagery trials (False: free running, as phase-locked or
    biomarker-driven stimulation at rest)."""

    @model_validator(mode="after")
    def _complete(self):
        low, high = self.iti_s
        if not 0 <= low <= high:
            raise ValueError(f"iti_s: got {[low, high]}; need [low, high] with 0 <= low <= high")
        if self.kind == "calibration" and self.trials < 4:
            raise ValueError(f"trials: got {self.trials}; calibration needs at least 4 trials")
        if self.kind in ("baseline", "closed_loop", "rest") and self.duration_s <= 0:
            raise ValueError(f"duration_s: got {self.duration_s}; a {self.kind} block needs > 0 s")
        return self


class RecordingSection(_Strict):
    enabled: bool = True
    """Record every session stream to XDF with LabRecorder."""
    filename: str = "session.xdf"
    """XDF file name inside the session's output folder."""
    required: bool = True
    """Stimulation needs the recording: if LabRecorder ends, or its disk holds less than 30 s
    at the rate the session records, the output ramps to zero and stays there for the session.
    ``false`` lets the session stimulate on unrecorded (the problem is still reported)."""
    also: list[str] = []
    """LSL predicates (XPath, e.g. ``"type='EEG'"``) of further streams to record. A stream
    matching one, or named with the session's prefix, that appears after the start (a second
    amplifier) is added to the recording (as a part file beside the XDF)."""


class Protocol(_Strict):
    session: SessionSection = SessionSection()
    source: SourceSection = SourceSection()
    preprocessing: PreprocessingSection = PreprocessingSection()
    decoder: DecoderSection = DecoderSection()
    controller: ControllerSection = ProportionalSection()
    stimulator: StimulatorSection = StimulatorSection()
    safety: SafetySection = SafetySection()
    blocks: list[Block] = Field(min_length=1)
    recording: RecordingSection = RecordingSection()
    control: ControlSection = ControlSection()

    @property
    def uses_decoder(self) -> bool:
        """Whether the controller reads the decoder (else a biomarker or a phase)."""
        ctl = self.controller
        return ctl.kind == "class_map" or (ctl.kind == "proportional" and ctl.input == "decoder")

    @model_validator(mode="after")
    def _consistent(self):
        self._check_controller()
        if self.stimulator.kind != "simulated" and not self.session.participant:
            raise ValueError(
                f"session.participant: missing; a {self.stimulator.kind} stimulator stimulates "
                "a person, whose dose the ledger adds up over 24 h across sessions: set it to "
                "the participant's id (--set session.participant=P017)"
            )
        if self.decoder.epoch_tmax_s - self.decoder.epoch_tmin_s < self.preprocessing.window_s:
            raise ValueError(
                f"decoder.epoch_tmax_s: got {self.decoder.epoch_tmax_s}; "
                "epoch_tmax_s - epoch_tmin_s must be at least "
                f"preprocessing.window_s = {self.preprocessing.window_s} s"
            )
        if self.safety.watchdog_stall_s < 2 * self.source.chunk_s:
            raise ValueError(
                f"safety.watchdog_stall_s: got {self.safety.watchdog_stall_s}; must be at least "
                f"twice source.chunk_s = {self.source.chunk_s} or every chunk looks like a stall"
            )
        if self.source.kind == "virtual":
            self._check_rates(self.source.eeg_srate)
        has_nirs = (
            self.source.fnirs if self.source.kind == "virtual" else bool(self.source.nirs_stream)
        )
        if self.decoder.kind in ("fnirs", "hybrid") and not has_nirs:
            raise ValueError(
                f"decoder.kind: got {self.decoder.kind!r}, which reads fNIRS, but the source has "
                "none; set source.fnirs = true (virtual) or source.nirs_stream (lsl)"
            )
        for i, block in enumerate(self.blocks):
            if (
                block.kind == "calibration"
                and self.decoder.epoch_tmax_s > block.cue_s + block.iti_s[0]
            ):
                raise ValueError(
                    f"decoder.epoch_tmax_s: got {self.decoder.epoch_tmax_s}; calibration block {i} "
                    f"leaves only cue_s + iti_s[0] = {block.cue_s + block.iti_s[0]} s per trial"
                )
        kinds = [block.kind for block in self.blocks]
        if "closed_loop" in kinds:
            before = kinds[: kinds.index("closed_loop")]
            if self.uses_decoder and "fit" not in before:
                raise ValueError("blocks: a closed_loop block needs a fit block before it")
            if not self.uses_decoder and "baseline" not in before:
                raise ValueError(
                    f"blocks: a {self.controller.kind} controller needs a baseline block before "
                    "the closed loop (it sets the biomarker or phase-power reference)"
                )
            window = getattr(self.controller, "window_s", self.preprocessing.window_s)
            for i, block in enumerate(self.blocks[: kinds.index("closed_loop")]):
                if (
                    not self.uses_decoder
                    and block.kind == "baseline"
                    and block.duration_s < 2 * window
                ):
                    raise ValueError(
                        f"blocks.{i}.duration_s: got {block.duration_s}; the baseline sets the "
                        f"{self.controller.kind} controller's reference and needs at least two "
                        f"windows ({2 * window:g} s)"
                    )
        if "fit" in kinds and "calibration" not in kinds[: kinds.index("fit")]:
            raise ValueError("blocks: a fit block needs a calibration block before it")
        return self

    def _check_controller(self) -> None:
        ctl, stim = self.controller, self.stimulator
        classes = self.decoder.classes
        if (
            ctl.kind == "proportional"
            and ctl.input == "decoder"
            and ctl.target_class not in classes
        ):
            raise ValueError(
                f"controller.target_class: got {ctl.target_class!r}; must be one "
                f"of decoder.classes {list(classes)}"
            )
        if ctl.kind == "class_map" and len(ctl.amplitudes) != len(classes):
            raise ValueError(
                f"controller.amplitudes: got {len(ctl.amplitudes)} values; need one per class "
                f"of decoder.classes {list(classes)}"
            )
        if ctl.peak > stim.limits.max_amplitude:
            raise ValueError(
                f"controller: asks for up to {ctl.peak}; must not exceed "
                f"stimulator.limits.max_amplitude = {stim.limits.max_amplitude}"
            )
        ramp = getattr(ctl, "ramp_up_per_s", None)
        if ramp is not None and stim.modality != "tms" and ramp > stim.limits.max_slew_per_s:
            raise ValueError(
                f"controller.ramp_up_per_s: got {ramp}; must not exceed "
                f"stimulator.limits.max_slew_per_s = {stim.limits.max_slew_per_s}"
            )
        if ctl.kind == "phase" and stim.modality not in ("tms", "tacs"):
            raise ValueError(
                f"controller.kind: got 'phase', which fires pulses; stimulator.modality must be "
                f"tms (pulses) or tacs (sine restarts), got {stim.modality!r}"
            )
        if ctl.kind != "phase" and stim.modality == "tms":
            raise ValueError(
                f"controller.kind: got {ctl.kind!r}; TMS fires single pulses, use the 'phase' "
                "controller"
            )
        if ctl.kind == "phase" and self.source.kind == "virtual":
            if ctl.band_hz[1] >= self.source.eeg_srate / 2:
                raise ValueError(f"controller.band_hz: got {list(ctl.band_hz)}; above Nyquist")

    def _check_rates(self, sfreq: float) -> None:
        """Rate-dependent limits, known before the stream for a virtual source."""
        if self.preprocessing.bandpass_hz[1] >= sfreq / 2:
            raise ValueError(
                f"preprocessing.bandpass_hz: got {list(self.preprocessing.bandpass_hz)}; the high "
                f"edge must be below the Nyquist frequency {sfreq / 2:g} Hz"
            )
        if self.preprocessing.hop_s * sfreq < 1:
            raise ValueError(
                f"preprocessing.hop_s: got {self.preprocessing.hop_s}; shorter than one sample "
                f"at {sfreq:g} Hz"
            )
