"""The virtual subject: one brain, seen through EEG and fNIRS, that follows cues and answers
stimulation. A pure object (no LSL, no threads, no clock): times are seconds since the first
sample, and signals advance only when asked for.
"""

from __future__ import annotations

import math

import numpy as np

from bci.streams import CUE_LEFT, CUE_REST, CUE_RIGHT

from . import montage
from .eeg import EegGenerator, EegSettings
from .fnirs import FnirsGenerator, FnirsSettings
from .params import SubjectParams
from .stimulation import HEMISPHERES, MODALITIES, Plasticity, motor_drive


class VirtualSubject:
    """A simulated participant of a closed-loop BCI session.

    Parameters
    ----------
    params : SubjectParams, optional
        Who the subject is; default a typical subject. Use ``SubjectParams.from_seed(seed)`` for
        a member of the population.
    eeg : EegSettings, optional
        EEG cap and amplifier; default 32 channels at 500 Hz.
    fnirs : FnirsSettings or None, optional
        fNIRS device; default 10 Hz; None for an EEG-only session.

    Examples
    --------
    >>> subject = VirtualSubject(SubjectParams.from_seed(3))
    >>> subject.cue("right", time=2.0)  # right-hand imagery from t = 2 s: ERD over C3
    >>> data = subject.eeg(1000)  # (1000, 32) µV, t = 0..2 s
    """

    def __init__(
        self,
        params: SubjectParams | None = None,
        eeg: EegSettings | None = None,
        fnirs: FnirsSettings | None = FnirsSettings(),  # noqa: B008 - frozen, so safe to share
    ) -> None:
        self.params = SubjectParams() if params is None else params
        self.eeg_settings = EegSettings() if eeg is None else eeg
        self.fnirs_settings = fnirs
        self._eeg = EegGenerator(self.params, self.eeg_settings)
        self._fnirs = None if fnirs is None else FnirsGenerator(self.params, fnirs)
        self.plasticity = Plasticity(self.params.stimulation)
        """tDCS plasticity state of both motor cortices (advanced with the EEG clock)."""

    # ------------------------------------------------------------------------------ properties
    @property
    def eeg_channel_names(self) -> tuple[str, ...]:
        """Names of the ``eeg()`` columns (electrodes, then ``SampleIndex`` if enabled)."""
        return self._eeg.channel_names

    @property
    def fnirs_channel_names(self) -> tuple[str, ...]:
        """Names of the ``fnirs()`` columns; empty without fNIRS."""
        return () if self._fnirs is None else self._fnirs.channel_names

    @property
    def time(self) -> float:
        """EEG time: time of the next EEG sample, s."""
        return self._eeg.time

    @property
    def fnirs_time(self) -> float:
        """Time of the next fNIRS sample, s."""
        return math.nan if self._fnirs is None else self._fnirs.time

    @property
    def erd_gain(self) -> dict[str, float]:
        """ERD depth multiplier of each motor cortex (``"left"``, ``"right"``) at the current
        EEG time: 1 untouched, > 1 after anodal tDCS, < 1 after cathodal."""
        gain = self.plasticity.advance(self.time)
        return dict(zip(HEMISPHERES, gain.tolist(), strict=True))

    # ---------------------------------------------------------------------------------- inputs
    def cue(self, label: str, time: float | None = None) -> None:
        """Follow a cue: imagine the left or right hand, or rest.

        Parameters
        ----------
        label : str
            ``"left"`` or ``"right"`` starts imagery (ERD over the contralateral motor cortex,
            HbO rise there); ``"rest"`` ends it.
        time : float, optional
            Cue time, s since the first sample; default now (the next EEG sample). A time
            already generated applies at the next sample.
        """
        if label not in (CUE_LEFT, CUE_RIGHT, CUE_REST):
            raise ValueError(f"label must be 'left', 'right' or 'rest', got {label!r}")
        time = self._check_time(time)
        # The ERD depth is set by the plasticity state when the ERD sets in, so tDCS commands
        # given between now and then still count.
        self._eeg.set_imagery(label, time, self.plasticity.advance)
        if self._fnirs is not None:
            self._fnirs.set_imagery(label, time)

    def stimulate(
        self,
        amplitude: float,
        frequency_hz: float = 0.0,
        pulses: int = 0,
        modality: str = "tdcs",
        anode: str | None = None,
        cathode: str | None = None,
        time: float | None = None,
    ) -> None:
        """Apply one stimulator command (a sample of the ``bci.streams`` stim stream).

        Parameters
        ----------
        amplitude : float
            mA for ``tdcs`` (signed: > 0 anodal under ``anode``), ``tacs`` and ``pulse_train``;
            % of maximum stimulator output (0–100) for ``tms``. A tES command holds until the
            next one of the same modality; 0 stops it.
        frequency_hz : float
            tACS or pulse-train frequency, Hz; 0 for tDCS and single TMS pulses.
        pulses : int
            TMS pulses fired by this command, 0 or 1.
        modality : str
            ``"tdcs"``, ``"tacs"``, ``"tms"`` or ``"pulse_train"``.
        anode, cathode : str or None
            10-05 electrode names where current enters and leaves (the TMS coil site is
            ``anode``, default Cz).
        time : float, optional
            Command time, s since the first sample; default now.

        Notes
        -----
        tDCS near C3/C4 drives ``erd_gain`` of that hemisphere (``stimulation.Plasticity``);
        tACS within ±2 Hz of the IAF raises posterior alpha while on; a TMS pulse evokes a TEP
        (N15…P180) plus a pulse artifact; every tES modality also leaves an electrical artifact.
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        for name, value in (("amplitude", amplitude), ("frequency_hz", frequency_hz)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float | np.number)
                or not (math.isfinite(value))
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if frequency_hz < 0:
            raise ValueError(f"frequency_hz must be >= 0, got {frequency_hz}")
        if pulses not in (0, 1):
            raise ValueError(f"pulses must be 0 or 1, got {pulses!r}")
        for name, electrode in (("anode", anode), ("cathode", cathode)):
            if electrode:
                montage.position(electrode, name)
        time = self._check_time(time)
        amplitude, frequency_hz = float(amplitude), float(frequency_hz)
        if modality == "tms":
            if not 0 <= amplitude <= 100:
                raise ValueError(f"amplitude must be 0–100 % MSO for tms, got {amplitude}")
            if pulses:
                site = montage.position(anode or "Cz", "anode")
                self._eeg.tms_pulse(time, amplitude, site)
            return
        if modality == "tdcs":
            self.plasticity.set_drive(time, motor_drive(amplitude, anode, cathode))
            self._eeg.set_artifact("tdcs", time, amplitude, 0.0, anode, cathode)
        elif modality == "tacs":
            self._eeg.set_tacs(time, amplitude, frequency_hz, anode, cathode)
        else:
            self._eeg.set_artifact("pulse_train", time, amplitude, frequency_hz, anode, cathode)

    # --------------------------------------------------------------------------------- outputs
    def eeg(self, n_samples: int) -> np.ndarray:
        """Next ``n_samples`` EEG samples.

        Returns
        -------
        data : array, shape (n_samples, n_channels)
            µV; columns ``eeg_channel_names``.
        """
        data = self._eeg(n_samples)
        self.plasticity.advance(self.time)
        return data

    def fnirs(self, n_samples: int) -> np.ndarray:
        """Next ``n_samples`` fNIRS samples.

        Returns
        -------
        data : array, shape (n_samples, 16)
            Raw intensity, a.u.; columns ``fnirs_channel_names``.
        """
        if self._fnirs is None:
            raise RuntimeError("this subject has no fNIRS; pass fnirs=FnirsSettings() to create it")
        return self._fnirs(n_samples)

    def _check_time(self, time: float | None) -> float:
        if time is None:
            return self.time
        if (
            isinstance(time, bool)
            or not isinstance(time, int | float | np.number)
            or not (math.isfinite(time))
        ):
            raise ValueError(f"time must be a finite number of seconds, got {time!r}")
        return float(time)
