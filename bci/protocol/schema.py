"""The session protocol: a TOML file validated by this schema before anything starts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bci.safety.ceilings import HARD_CEILINGS
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


class SourceSection(_Strict):
    kind: Literal["virtual", "lsl"] = "virtual"
    """``virtual`` spawns the virtual subject; ``lsl`` resolves streams already on the network."""
    seed: int = 0
    """Virtual subject: which member of the simulated population."""
    eeg_channels: Literal[8, 16, 32, 64] = 32
    """Virtual subject: EEG montage size (10-20/10-10 names)."""
    eeg_srate: Annotated[float, Field(ge=250, le=2000)] = 500.0
    """Virtual subject: EEG sampling rate, Hz."""
    fnirs: bool = True
    """Virtual subject: also publish fNIRS."""
    line_freq: Literal[50, 60] = 50
    """Virtual subject: mains frequency, Hz."""
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


class ControllerSection(_Strict):
    kind: Literal["proportional"] = "proportional"
    """Policy turning decoder output into a stimulation amplitude."""
    target_class: str = "right"
    """The class whose probability drives the amplitude."""
    p_low: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Probability at which the amplitude leaves the floor."""
    p_high: Annotated[float, Field(ge=0, le=1)] = 0.9
    """Probability at which the amplitude reaches the ceiling."""
    floor: Annotated[float, Field(ge=0)] = 0.0
    """Lowest amplitude while the loop runs (stimulator unit)."""
    ceiling: Annotated[float, Field(ge=0)] = 1.0
    """Highest amplitude the policy asks for (stimulator unit)."""
    ramp_up_per_s: Annotated[float, Field(gt=0)] = 0.5
    """Fastest rise the policy asks for, unit/s."""
    ramp_down_per_s: Annotated[float, Field(gt=0)] = 1.0
    """Fastest fall the policy asks for, unit/s."""
    abstain_below: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Hold the amplitude where it is while the decoder's most probable class is below this
    probability (0: never abstain)."""

    @model_validator(mode="after")
    def _ordered(self):
        if self.p_low >= self.p_high:
            raise ValueError(f"p_low: got {self.p_low}; must be below p_high = {self.p_high}")
        if self.floor > self.ceiling:
            raise ValueError(f"floor: got {self.floor}; must not exceed ceiling = {self.ceiling}")
        return self


class LimitsSection(_Strict):
    max_amplitude: Annotated[float, Field(ge=0)] = 2.0
    """Session ceiling on |amplitude| (mA for tES, %MSO for TMS); at most the hard ceiling."""
    max_slew_per_s: Annotated[float, Field(gt=0)] = 1.0
    """Session ceiling on the amplitude change rate, unit/s; at most the hard ceiling."""


class StimulatorSection(_Strict):
    kind: Literal["simulated"] = "simulated"
    """Which stimulator drives current; later releases add serial hardware."""
    modality: Literal["tdcs", "tacs", "tms", "pulse_train"] = "tdcs"
    """Stimulation modality."""
    anode: str = "C3"
    """Anode (tES) or coil site (TMS), 10-20 name."""
    cathode: str = "Fp2"
    """Return electrode, 10-20 name."""
    frequency_hz: Annotated[float, Field(ge=0)] = 0.0
    """tACS / pulse-train frequency, Hz (0 for tDCS)."""
    limits: LimitsSection = LimitsSection()

    @model_validator(mode="after")
    def _within_ceilings(self):
        if self.anode == self.cathode:
            raise ValueError(f"cathode: got {self.cathode!r}; must differ from the anode")
        oscillating = self.modality in ("tacs", "pulse_train")
        if oscillating and not 0.1 <= self.frequency_hz <= 255:
            raise ValueError(
                f"frequency_hz: got {self.frequency_hz}; {self.modality} needs 0.1-255 Hz"
            )
        if not oscillating and self.frequency_hz != 0:
            raise ValueError(f"frequency_hz: got {self.frequency_hz}; {self.modality} needs 0")
        hard = HARD_CEILINGS[self.modality]
        if self.limits.max_amplitude > hard.max_amplitude:
            raise ValueError(
                f"limits.max_amplitude: got {self.limits.max_amplitude} {hard.unit}; above the "
                f"{self.modality} hard ceiling of {hard.max_amplitude} {hard.unit} ({hard.source})"
            )
        if self.limits.max_slew_per_s > hard.max_slew_per_s:
            raise ValueError(
                f"limits.max_slew_per_s: got {self.limits.max_slew_per_s}; above the "
                f"{self.modality} hard ceiling of {hard.max_slew_per_s} {hard.unit}/s"
            )
        return self


class SafetySection(_Strict):
    watchdog_stall_s: Annotated[float, Field(gt=0, le=0.1)] = 0.05
    """Input silent this long trips the watchdog, s (≤ 0.1 s)."""
    stop_ramp_s: Annotated[float, Field(gt=0, le=1.0)] = 0.5
    """A trip ramps the amplitude to zero within this time, s (≤ 1 s)."""


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


class Protocol(_Strict):
    session: SessionSection = SessionSection()
    source: SourceSection = SourceSection()
    preprocessing: PreprocessingSection = PreprocessingSection()
    decoder: DecoderSection = DecoderSection()
    controller: ControllerSection = ControllerSection()
    stimulator: StimulatorSection = StimulatorSection()
    safety: SafetySection = SafetySection()
    blocks: list[Block] = Field(min_length=1)
    recording: RecordingSection = RecordingSection()

    @model_validator(mode="after")
    def _consistent(self):
        if self.controller.target_class not in self.decoder.classes:
            raise ValueError(
                f"controller.target_class: got {self.controller.target_class!r}; must be one "
                f"of decoder.classes {list(self.decoder.classes)}"
            )
        if self.controller.ceiling > self.stimulator.limits.max_amplitude:
            raise ValueError(
                f"controller.ceiling: got {self.controller.ceiling}; must not exceed "
                f"stimulator.limits.max_amplitude = {self.stimulator.limits.max_amplitude}"
            )
        if self.decoder.epoch_tmax_s - self.decoder.epoch_tmin_s < self.preprocessing.window_s:
            raise ValueError(
                f"decoder.epoch_tmax_s: got {self.decoder.epoch_tmax_s}; "
                "epoch_tmax_s - epoch_tmin_s must be at least "
                f"preprocessing.window_s = {self.preprocessing.window_s} s"
            )
        if self.controller.ramp_up_per_s > self.stimulator.limits.max_slew_per_s:
            raise ValueError(
                f"controller.ramp_up_per_s: got {self.controller.ramp_up_per_s}; must not exceed "
                f"stimulator.limits.max_slew_per_s = {self.stimulator.limits.max_slew_per_s}"
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
        if "closed_loop" in kinds and (
            "fit" not in kinds or kinds.index("fit") > kinds.index("closed_loop")
        ):
            raise ValueError("blocks: a closed_loop block needs a fit block before it")
        if "fit" in kinds and "calibration" not in kinds[: kinds.index("fit")]:
            raise ValueError("blocks: a fit block needs a calibration block before it")
        return self

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
