"""Publish a BrainFlow board (OpenBCI, Muse, synthetic, ...) as an LSL EEG outlet.

The bridge is a source process like the virtual subject: it owns the board session, pulls what the
board has buffered every ``chunk_s`` and pushes it to one LSL outlet with per-sample timestamps.

Timestamps
----------
BrainFlow stamps every sample with the host's UNIX time (``time.time()``) when it was received.
LSL peers live on ``pylsl.local_clock()``, a monotonic clock with another origin. The bridge
measures ``offset = local_clock() - time.time()`` once, when streaming starts (the narrowest of a
few bracketed reads, so the error is a few µs), and pushes ``brainflow_time + offset``. Because the
offset is not re-measured, a step of the system's wall clock during a session (a manual change, an
NTP step) shifts every later timestamp by that step: restart the stream after changing the clock.
NTP slewing moves both clocks alike on Linux and does not matter.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pylsl
from brainflow.board_shim import BoardShim, BrainFlowError

from bci.streams import EEG_TYPE
from devices.brainflow_settings import (
    AUX_KINDS,
    CONNECT_HINTS,
    DEVICE_HINT,
    LOG_LEVELS,
    BridgeSettings,
    exit_code_name,
    list_boards,
    load_brainflow,
    measure_clock_offset,
)

__all__ = ["BrainFlowBridge", "BridgeSettings", "list_boards"]


class BrainFlowBridge:
    """A BrainFlow board published as an LSL outlet of type ``EEG``, float32, µV.

    Lifecycle: ``connect()`` opens the board session, ``start()`` starts acquisition and creates
    the outlet, ``pump()`` moves what the board has to LSL, ``stop()`` ends acquisition and removes
    the outlet, ``disconnect()`` releases the board. ``run()`` does it all, paced by target time.
    As a context manager the bridge connects on entry and disconnects on exit.

    Parameters
    ----------
    settings : BridgeSettings
        Board, connection and stream settings.
    """

    def __init__(self, settings: BridgeSettings) -> None:
        if not isinstance(settings, BridgeSettings):
            raise TypeError(f"settings must be BridgeSettings, got {type(settings).__name__}.")
        self.settings = settings
        load_brainflow()
        BoardShim.set_log_level(LOG_LEVELS[settings.log_level].value)
        descr = BoardShim.get_board_descr(settings.board_id)
        eeg_rows = list(descr.get("eeg_channels", []))
        if not eeg_rows:
            raise ValueError(
                f"board={settings.board!r} has no EEG channels in BrainFlow's default preset; "
                f"the bridge publishes EEG boards only."
            )
        # what BoardShim.get_eeg_names returns, read here because that call logs an error for
        # boards without names (ganglion) before it raises
        names = descr.get("eeg_names", "").split(",")
        if len(names) != len(eeg_rows) or not all(names):
            names = [f"EEG{i + 1}" for i in range(len(eeg_rows))]
        rows, labels, types = list(eeg_rows), names, [EEG_TYPE] * len(eeg_rows)
        if settings.include_aux:
            for key, prefix, kind in AUX_KINDS:
                aux = [row for row in descr.get(key, []) if row not in rows]
                suffixes = "XYZ" if len(aux) == 3 else [str(i + 1) for i in range(len(aux))]
                rows += aux
                labels += [f"{prefix}{suffix}" for suffix in suffixes]
                types += [kind] * len(aux)
        self.sfreq = float(descr["sampling_rate"])
        """Nominal sampling rate of the board, Hz."""
        self.ch_names = tuple(labels)
        """Channel labels: EEG (10-20 names when BrainFlow knows them), then motion sensors."""
        self.ch_types = tuple(types)
        """LSL channel types: ``EEG``, ``ACC``, ``GYRO``, ``MAG``."""
        self._rows = np.array(rows)
        self._timestamp_row = int(descr["timestamp_channel"])
        self._board: BoardShim | None = None
        self._outlet: pylsl.StreamOutlet | None = None
        self._reset()

    def _reset(self) -> None:
        self.clock_offset = math.nan
        """``local_clock() - time.time()`` measured at ``start()``, s (see the module doc)."""
        self.n_pushed = 0
        """Samples pushed to LSL since ``start()``."""
        self.newest_time = math.nan
        """LSL timestamp of the newest sample pushed, s (local clock)."""

    # lifecycle -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the board session is open."""
        return self._board is not None

    @property
    def streaming(self) -> bool:
        """Whether the board acquires and the outlet exists."""
        return self._outlet is not None

    def _state_error(self, state: str, todo: str) -> RuntimeError:
        return RuntimeError(f"BrainFlow bridge for {self.settings.board!r} is {state}; {todo}.")

    def _check_connected(self, what: str) -> BoardShim:
        if self._board is None:
            raise self._state_error("not connected", f"call connect() before {what}")
        return self._board

    def _check_streaming(self, what: str) -> pylsl.StreamOutlet:
        self._check_connected(what)
        if self._outlet is None:
            raise self._state_error("not streaming", f"call start() before {what}")
        return self._outlet

    def _device_error(self, action: str, err: BrainFlowError) -> RuntimeError:
        return RuntimeError(
            f"BrainFlow board {self.settings.board!r} failed to {action}: "
            f"{exit_code_name(err)}; {DEVICE_HINT}."
        )

    def connect(self) -> BrainFlowBridge:
        """Open the board session (BrainFlow ``prepare_session``); returns self.

        Raises
        ------
        RuntimeError
            If already connected, or BrainFlow cannot open the board: the message names the board,
            its port or address, and what to check.
        """
        if self._board is not None:
            raise self._state_error("already connected", "call disconnect() first")
        board = BoardShim(self.settings.board_id, self.settings.input_params())
        try:
            board.prepare_session()
        except BrainFlowError as err:
            s = self.settings
            where = [f"serial port {s.serial_port!r}"] if s.serial_port else []
            where += [f"MAC address {s.mac_address!r}"] if s.mac_address else []
            where += [f"IP {s.ip_address}:{s.ip_port}"] if s.ip_address else []
            raise RuntimeError(
                f"Could not connect to BrainFlow board {s.board!r} "
                f"({' and '.join(where) or 'no serial port given'}): {exit_code_name(err)}; "
                f"{CONNECT_HINTS.get(exit_code_name(err), DEVICE_HINT)}."
            ) from err
        self._board = board
        return self

    def start(self) -> None:
        """Start acquisition and create the LSL outlet.

        Raises
        ------
        RuntimeError
            If not connected or already streaming, or the board refuses to start.
        """
        board = self._check_connected("start()")
        if self._outlet is not None:
            raise self._state_error("already streaming", "call stop() first")
        outlet = pylsl.StreamOutlet(self._stream_info(), chunk_size=0, max_buffered=60)
        try:
            board.start_stream()
        except BrainFlowError as err:
            raise self._device_error("start streaming", err) from err
        self._reset()
        self.clock_offset = measure_clock_offset()
        self._outlet = outlet

    def stop(self) -> None:
        """Stop acquisition, push what the board still held, and remove the outlet."""
        self._check_streaming("stop()")
        try:
            self._board.stop_stream()
            self.pump()
        except BrainFlowError as err:
            raise self._device_error("stop streaming", err) from err
        finally:
            self._outlet = None

    def disconnect(self) -> None:
        """Stop if streaming, then release the board session."""
        board = self._check_connected("disconnect()")
        try:
            if self._outlet is not None:
                self.stop()
        finally:
            self._board = None
            self._reset()
            try:
                board.release_session()
            except BrainFlowError as err:
                raise self._device_error("release its session", err) from err

    def __enter__(self) -> BrainFlowBridge:
        return self.connect()

    def __exit__(self, *exc) -> None:
        if self._board is not None:
            self.disconnect()

    # data ----------------------------------------------------------------------------------
    def _stream_info(self) -> pylsl.StreamInfo:
        s = self.settings
        info = pylsl.StreamInfo(
            s.name, EEG_TYPE, len(self.ch_names), self.sfreq, pylsl.cf_float32, s.source_id
        )
        channels = info.desc().append_child("channels")
        for label, kind in zip(self.ch_names, self.ch_types, strict=True):
            channel = channels.append_child("channel")
            channel.append_child_value("label", label)
            channel.append_child_value("unit", "microvolts" if kind == EEG_TYPE else "")
            channel.append_child_value("type", kind)
        acquisition = info.desc().append_child("acquisition")
        acquisition.append_child_value("manufacturer", "BrainFlow")
        acquisition.append_child_value("model", s.board)
        acquisition.append_child_value("serial_port", s.serial_port)
        acquisition.append_child_value("brainflow_version", BoardShim.get_version())
        return info

    def pump(self) -> int:
        """Push everything the board has buffered to LSL, without waiting.

        Returns
        -------
        n_samples : int
            Samples pushed (0 when the board had none).
        """
        outlet = self._check_streaming("pump()")
        try:
            data = self._board.get_board_data()  # shape (n_rows, n_samples), removes them
        except BrainFlowError as err:
            raise self._device_error("deliver data", err) from err
        n = data.shape[1]
        if n == 0:
            return 0
        chunk = np.ascontiguousarray(data[self._rows].T, dtype=np.float32)
        times = data[self._timestamp_row] + self.clock_offset
        outlet.push_chunk(chunk, times.tolist())
        self.n_pushed += n
        self.newest_time = float(times[-1])
        return n

    def run(
        self, duration_s: float | None = None, stop_event: threading.Event | None = None
    ) -> int:
        """Stream until ``duration_s`` has passed or ``stop_event`` is set.

        Connects and starts when needed, and stops and disconnects on return whatever it opened
        itself (also on an error or KeyboardInterrupt). The board is pulled every ``chunk_s``,
        paced by target time so that slow pushes do not make it drift.

        Parameters
        ----------
        duration_s : float | None
            How long to stream, s; ``None`` to stream until ``stop_event`` is set (or Ctrl-C).
        stop_event : threading.Event | None
            Set it from another thread to end the run.

        Returns
        -------
        n_samples : int
            Samples pushed during the run.
        """
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(
                f"duration_s must be a positive number of s or None, got {duration_s!r}."
            )
        stop_event = threading.Event() if stop_event is None else stop_event
        opened = not self.connected
        if opened:
            self.connect()
        started = not self.streaming
        try:
            if started:
                self.start()
            n_before = self.n_pushed
            now = pylsl.local_clock()
            end = math.inf if duration_s is None else now + duration_s
            target = now
            while not stop_event.is_set():
                self.pump()
                now = pylsl.local_clock()
                if now >= end:
                    break
                target += self.settings.chunk_s
                if target <= now:  # fell behind: skip the missed ticks rather than burst
                    target = now + self.settings.chunk_s
                stop_event.wait(min(target, end) - now)
            if started:
                self.stop()  # pushes what the board still held
            return self.n_pushed - n_before
        finally:
            if started and self.streaming:
                self.stop()
            if opened and self.connected:
                self.disconnect()
