"""Protocol sections of the stimulation path: the controller policy, the stimulator and its
session limits, the watchdog, and the control channel."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from bci.safety.ceilings import HARD_CEILINGS
from bci.safety.governor import GovernorSettings
from bci.safety.site import HARD_ONLY, SiteLimits, limits_problems, load_site_limits

Probability = Annotated[float, Field(ge=0, le=1)]
Rate = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Ramps(_Strict):
    ramp_up_per_s: Rate = 0.5
    """Fastest rise the policy asks for, unit/s (at most stimulator.limits.max_slew_per_s)."""
    ramp_down_per_s: Rate = 1.0
    """Fastest fall the policy asks for, unit/s."""


class ProportionalSection(_Ramps):
    kind: Literal["proportional"] = "proportional"
    """Amplitude follows a decoder probability or a biomarker between floor and ceiling
    (adaptive-DBS style)."""
    input: Literal["decoder", "biomarker"] = "decoder"
    """``decoder``: p(target_class); ``biomarker``: band power of the preprocessed picks over
    preprocessing.window_s, relative to its median in the baseline block (1 = typical rest)."""
    target_class: str = "right"
    """input = decoder: the class whose probability drives the amplitude."""
    p_low: Annotated[float, Field(ge=0)] = 0.5
    """Input value at which the amplitude leaves the floor."""
    p_high: Annotated[float, Field(ge=0)] = 0.9
    """Input value at which the amplitude reaches the ceiling."""
    floor: Annotated[float, Field(ge=0)] = 0.0
    """Lowest amplitude while the loop runs (stimulator unit)."""
    ceiling: Annotated[float, Field(ge=0)] = 1.0
    """Highest amplitude the policy asks for (stimulator unit)."""
    abstain_below: Probability = 0.0
    """input = decoder: hold the amplitude while the most probable class is below this
    probability (0: never abstain)."""

    @model_validator(mode="after")
    def _ordered(self):
        if self.p_low >= self.p_high:
            raise ValueError(f"p_low: got {self.p_low}; must be below p_high = {self.p_high}")
        if self.input == "decoder" and self.p_high > 1:
            raise ValueError(f"p_high: got {self.p_high}; a probability is at most 1")
        if self.floor > self.ceiling:
            raise ValueError(f"floor: got {self.floor}; must not exceed ceiling = {self.ceiling}")
        return self

    @property
    def peak(self) -> float:
        return self.ceiling


class DualThresholdSection(_Ramps):
    kind: Literal["dual_threshold"]
    """On/off with hysteresis on a biomarker (Summit RC+S style)."""
    lower: Annotated[float, Field(ge=0)] = 1.0
    """Termination threshold, biomarker units (band power / baseline median)."""
    upper: Annotated[float, Field(ge=0)] = 1.5
    """Onset threshold, biomarker units."""
    onset_windows: Annotated[int, Field(ge=1, le=100)] = 3
    """Consecutive decisions above ``upper`` that switch stimulation on."""
    termination_windows: Annotated[int, Field(ge=1, le=100)] = 5
    """Consecutive decisions below ``lower`` that switch it off."""
    blanking_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    """After each switch the biomarker is ignored this long (stimulation artifacts), s."""
    on_amplitude: Annotated[float, Field(ge=0)] = 1.0
    """Amplitude while on (stimulator unit)."""

    @model_validator(mode="after")
    def _ordered(self):
        if self.lower > self.upper:
            raise ValueError(f"lower: got {self.lower}; must not exceed upper = {self.upper}")
        return self

    @property
    def peak(self) -> float:
        return self.on_amplitude


class ClassMapSection(_Ramps):
    kind: Literal["class_map"]
    """Each decoded class asks for its own amplitude; unsure decisions hold."""
    amplitudes: list[Annotated[float, Field(ge=0)]] = Field(min_length=2)
    """Amplitude per class, in decoder.classes order (stimulator unit)."""
    abstain_below: Probability = 0.6
    """Hold the amplitude while the most probable class is below this probability."""

    @property
    def peak(self) -> float:
        return max(self.amplitudes)


class PhaseSection(_Strict):
    kind: Literal["phase"]
    """Phase-locked trigger: a pulse (TMS) or a sine restart (tACS) at a target phase."""
    method: Literal["echt", "ar"] = "echt"
    """Causal phase: endpoint-corrected Hilbert transform (Schreglmann et al. 2021) or
    autoregressive forward prediction (Zrenner et al. 2018)."""
    band_hz: tuple[float, float] = (8.0, 13.0)
    """Band whose phase is tracked (mu/alpha), Hz."""
    montage: Literal["laplacian", "single"] = "laplacian"
    """``laplacian``: first pick minus the mean of the others (C3 Hjorth); ``single``: first."""
    window_s: Annotated[float, Field(ge=0.2, le=2.0)] = 0.5
    """Signal the estimator reads at each update, s."""
    target_deg: Annotated[float, Field(ge=-180, le=180)] = 180.0
    """Target phase, degrees of the cosine: 0 peak, ±180 trough."""
    power_percentile: Annotated[float, Field(ge=0, lt=100)] = 75.0
    """Fire only while band amplitude is above this percentile of the baseline block (75: the
    phase is reliable only where the rhythm stands out; at 50 the PLV on virtual subjects falls
    to 0.64-0.73)."""
    refractory_s: Annotated[float, Field(ge=0, le=60)] = 1.0
    """Shortest time between triggers, s (TMS: the governor also enforces ≥ 1 s)."""
    max_lateness_deg: Annotated[float, Field(gt=0, le=90)] = 20.0
    """A crossing noticed later than this (phase degrees) is skipped, not fired late."""
    amplitude: Annotated[float, Field(ge=0)] = 1.0
    """TMS intensity (%MSO) or tACS amplitude (mA) while the loop runs."""

    @model_validator(mode="after")
    def _band(self):
        low, high = self.band_hz
        if not 0 < low < high:
            raise ValueError(f"band_hz: got {[low, high]}; need [low, high] with 0 < low < high")
        return self

    @property
    def peak(self) -> float:
        return self.amplitude


def _controller_kind(value) -> str | None:
    if isinstance(value, dict):
        return value.get("kind", "proportional")
    return getattr(value, "kind", None)


ControllerSection = Annotated[
    Annotated[ProportionalSection, Tag("proportional")]
    | Annotated[DualThresholdSection, Tag("dual_threshold")]
    | Annotated[ClassMapSection, Tag("class_map")]
    | Annotated[PhaseSection, Tag("phase")],
    Discriminator(_controller_kind),
]
"""The controller policy, chosen by ``controller.kind``."""


class LimitsSection(_Strict):
    max_amplitude: Annotated[float, Field(ge=0)] = 2.0
    """Session ceiling on |amplitude| (mA for tES, %MSO for TMS); at most the hard ceiling."""
    max_slew_per_s: Annotated[float, Field(gt=0)] = 1.0
    """Session ceiling on the amplitude change rate, unit/s; at most the hard ceiling
    (tES 1 mA/s; ignored for TMS, whose intensity is a setting)."""
    max_session_s: Annotated[float, Field(gt=0)] | None = None
    """Longest stimulation (output on) this session, s; default the site's, else the hard
    ceiling (tDCS 40 min)."""
    max_charge_mc: Annotated[float, Field(gt=0)] | None = None
    """Largest total charge this session, mC; default the site's, else the hard ceiling (tDCS
    7.2 C)."""
    min_pulse_interval_s: Annotated[float, Field(gt=0)] | None = None
    """Shortest time between pulses, s; default the hard ceiling (TMS 1 s)."""
    max_pulses: Annotated[int, Field(ge=0)] | None = None
    """Most pulses this session (default the site's, else no limit beyond the rate)."""
    max_daily_s: Annotated[float, Field(gt=0)] | None = None
    """Longest stimulation for the participant over any rolling 24 h, this session included, s;
    default the site's, else the hard ceiling (tDCS 40 min)."""
    max_daily_charge_mc: Annotated[float, Field(gt=0)] | None = None
    """Largest charge for the participant over any rolling 24 h, mC; default the site's, else
    the hard ceiling (tDCS 7.2 C)."""
    max_daily_pulses: Annotated[int, Field(ge=0)] | None = None
    """Most pulses for the participant over any rolling 24 h; default the site's, else none."""
    pulse_width_us: Annotated[float, Field(gt=0)] | None = None
    """Pulse trains: width of each phase, µs (10–450)."""
    electrode_area_cm2: Annotated[float, Field(gt=0)] | None = None
    """Pulse trains: stimulating contact area, cm² (DBS contact: 0.06)."""


_STIMULATOR_MODALITIES = {
    "simulated": tuple(HARD_CEILINGS),
    "magstim": ("tms",),
    "tes": ("tdcs", "tacs"),
}


class StimulatorSection(_Strict):
    kind: Literal["simulated", "magstim", "tes"] = "simulated"
    """``simulated`` (the virtual subject feels it), ``magstim`` (Magstim 200²/Rapid² TMS over
    serial), ``tes`` (open-hardware tDCS/tACS over serial, docs/tes_serial_protocol.md)."""
    port: str = ""
    """Serial port of a hardware stimulator (``--set stimulator.port=/dev/ttyUSB0``)."""
    modality: Literal["tdcs", "tacs", "tms", "pulse_train"] = "tdcs"
    """Stimulation modality."""
    anode: str = "C3"
    """Anode (tES) or coil site (TMS), 10-20 name."""
    cathode: str = "Fp2"
    """Return electrode, 10-20 name."""
    frequency_hz: Annotated[float, Field(ge=0)] = 0.0
    """tACS / pulse-train frequency, Hz (0 for tDCS and TMS)."""
    limits: LimitsSection = LimitsSection()

    @model_validator(mode="after")
    def _within_ceilings(self):
        if self.anode == self.cathode:
            raise ValueError(f"cathode: got {self.cathode!r}; must differ from the anode")
        allowed = _STIMULATOR_MODALITIES[self.kind]
        if self.modality not in allowed:
            raise ValueError(
                f"modality: got {self.modality!r}; a {self.kind} stimulator does "
                f"{' or '.join(allowed)}"
            )
        hard = HARD_CEILINGS[self.modality]
        if self.limits.max_amplitude > hard.max_amplitude:
            raise ValueError(
                f"limits.max_amplitude: got {self.limits.max_amplitude} {hard.unit}; above the "
                f"{self.modality} hard ceiling of {hard.max_amplitude} {hard.unit} ({hard.source})"
            )
        try:  # the hard ceilings; the site layer is checked when the protocol is loaded
            self.governor_settings(site=HARD_ONLY)
        except ValueError as err:
            field, _, rest = str(err).partition(" must ")
            where = "frequency_hz" if field == "frequency_hz" else f"limits.{field}"
            if rest and field.isidentifier():
                raise ValueError(f"{where}: must {rest}") from None
            raise ValueError(f"limits: {err}") from None
        return self

    def governor_settings(self, stop_ramp_s: float = 0.5, max_step_s: float = 0.1,
                          site: SiteLimits | None = None) -> GovernorSettings:  # fmt: skip
        """The governor's settings for this stimulator: the stricter of the hard ceilings, the
        site limits and the protocol's session limits (a limit the protocol leaves out takes
        the site's, else the hard ceiling).

        ``site`` None reads the site layer in force (:func:`bci.safety.site.load_site_limits`).
        Raises ``ValueError`` when a protocol limit is above the site's (a site file changed
        since the protocol was checked) and ``SiteLimitsError`` for a bad site file.
        """
        site = load_site_limits() if site is None else site
        if problems := limits_problems(self, site):
            raise ValueError("; ".join(problems))
        limits, modality = self.limits, self.modality

        def pick(key: str):
            value = getattr(limits, key)
            return site.value(modality, key) if value is None else value

        slew = limits.max_slew_per_s if modality != "tms" else float("inf")
        return GovernorSettings(
            modality, limits.max_amplitude, slew, stop_ramp_s, max_step_s,
            max_session_s=pick("max_session_s"), max_charge_mc=pick("max_charge_mc"),
            frequency_hz=self.frequency_hz, min_pulse_interval_s=limits.min_pulse_interval_s,
            max_pulses=pick("max_pulses"), pulse_width_us=limits.pulse_width_us,
            electrode_area_cm2=limits.electrode_area_cm2, max_daily_s=pick("max_daily_s"),
            max_daily_charge_mc=pick("max_daily_charge_mc"),
            max_daily_pulses=pick("max_daily_pulses"),
        )  # fmt: skip


class SafetySection(_Strict):
    watchdog_stall_s: Annotated[float, Field(gt=0, le=0.1)] = 0.05
    """Input silent this long trips the watchdog, s (≤ 0.1 s)."""
    stop_ramp_s: Annotated[float, Field(gt=0, le=1.0)] = 0.5
    """A trip ramps the amplitude to zero within this time, s (≤ 1 s; TMS disarms at once)."""


class ControlSection(_Strict):
    enabled: bool = True
    """Accept operator commands (emergency stop, re-arm, status) over ZeroMQ."""
    address: str = "tcp://127.0.0.1:5557"
    """Where the engine listens; port 0 picks a free one (printed and published as an event).
    Off the loopback (``0.0.0.0``, ``*``, a LAN address, a host name) only with ``keys_dir``."""
    keys_dir: str | None = None
    """CURVE keys folder (``bci control keygen NAME`` makes it, default
    ``~/.config/neuroloop/keys``): only operators whose public key is in its ``operators/``
    folder connect, and each command records the key's name. None: loopback only, guarded by a
    per-session secret only this user can read."""

    @model_validator(mode="after")
    def _reachable_only_with_keys(self):
        if self.enabled:
            from bci.engine.control_auth import check_bind

            try:
                check_bind(self.address, self.keys_dir)
            except ValueError as err:
                raise ValueError(str(err).removeprefix("control.").replace(
                    "--address must look like", "address: must look like")) from None
        return self
