"""The stimulator base class: one explicit lifecycle for simulated and hardware stimulators."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pylsl

from bci.safety.ceilings import HARD_CEILINGS


@dataclass(frozen=True)
class StimCommand:
    """One command as written to a stimulator."""

    amplitude: float
    """mA (tES, pulse trains; signed for tDCS) or %MSO (TMS)."""
    frequency_hz: float
    """tACS / pulse-train frequency, Hz."""
    pulses: int
    """TMS pulses fired by this command."""
    write_time: float
    """``pylsl.local_clock()`` when the write completed, s."""
    sample_time: float
    """Timestamp of the newest input sample behind the command, s."""


class Stimulator(ABC):
    """``connect`` → ``start`` → ``write``... → ``stop`` → ``disconnect``; a context manager.

    Only the safety governor calls :meth:`write`. ``stop`` always leaves the output at zero.
    """

    modality: str = "tdcs"

    def __init__(self) -> None:
        self._connected = False
        self._started = False
        self._reset()

    def _reset(self) -> None:
        self.last: StimCommand | None = None
        self.n_commands = 0

    def connect(self) -> Stimulator:
        """Open the device; output at zero."""
        if self._connected:
            raise RuntimeError(
                f"{type(self).__name__} is already connected; call disconnect() first."
            )
        self._connect()
        self._connected = True
        return self

    def start(self) -> None:
        """Accept commands from now on."""
        if not self._connected:
            raise RuntimeError(f"{type(self).__name__} is not connected; call connect() first.")
        self._reset()
        self._started = True

    def write(self, amplitude: float, frequency_hz: float, pulses: int, sample_time: float):
        """Send one command; returns the :class:`StimCommand` with its write time."""
        if not self._started:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() first.")
        ceiling = HARD_CEILINGS[self.modality].max_amplitude
        # the governor already enforces this; the driver refuses it again as a last line
        if not (math.isfinite(amplitude) and abs(amplitude) <= ceiling):
            raise ValueError(
                f"amplitude {amplitude!r} is not finite or above the {self.modality} hard "
                f"ceiling of {ceiling}; nothing was written."
            )
        if not (math.isfinite(frequency_hz) and frequency_hz >= 0 and pulses in (0, 1)):
            raise ValueError(
                f"frequency_hz must be finite and >= 0 and pulses 0 or 1, got "
                f"{frequency_hz!r}, {pulses!r}; nothing was written."
            )
        self._write(amplitude, frequency_hz, pulses)
        command = StimCommand(amplitude, frequency_hz, pulses, pylsl.local_clock(), sample_time)
        self.last = command
        self.n_commands += 1
        return command

    def stop(self) -> None:
        """Output to zero; idempotent."""
        if self._started:
            self._write(0.0, 0.0, 0)
            self._started = False

    def disconnect(self) -> None:
        """Stop if needed and release the device; idempotent."""
        self.stop()
        if self._connected:
            self._disconnect()
            self._connected = False

    def __enter__(self) -> Stimulator:
        self.connect()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    @abstractmethod
    def _connect(self) -> None: ...

    @abstractmethod
    def _write(self, amplitude: float, frequency_hz: float, pulses: int) -> None: ...

    @abstractmethod
    def _disconnect(self) -> None: ...
