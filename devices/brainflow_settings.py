"""BrainFlow board names, connection settings and error wording for the LSL bridge."""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass

import pylsl
from brainflow.board_shim import (
    BoardIds,
    BoardShim,
    BrainFlowError,
    BrainFlowInputParams,
    LogLevels,
)
from brainflow.exit_codes import BrainFlowExitCodes

# Pseudo-boards that need a master board and a file or address, and the placeholder id.
_UNSUPPORTED = ("no", "playback_file", "streaming")
_BOARDS = {m.name.lower().removesuffix("_board"): m for m in BoardIds}
_BOARDS = {key: member for key, member in _BOARDS.items() if key not in _UNSUPPORTED}
LOG_LEVELS = {level.name.removeprefix("LEVEL_").lower(): level for level in LogLevels}
# Motion sensors streamed with ``include_aux``: description key, label prefix, LSL channel type.
AUX_KINDS = (
    ("accel_channels", "Accel", "ACC"),
    ("gyro_channels", "Gyro", "GYRO"),
    ("magnetometer_channels", "Mag", "MAG"),
)
_PORT_HINT = (
    "check that the board's dongle is plugged in and the port is right, e.g. --serial-port "
    "/dev/ttyUSB0 (Linux), COM3 (Windows) or /dev/cu.usbserial-XXXX (macOS), and that no other "
    "program holds it"
)
CONNECT_HINTS = dict.fromkeys(
    ("UNABLE_TO_OPEN_PORT_ERROR", "PORT_ALREADY_OPEN_ERROR", "SET_PORT_ERROR"), _PORT_HINT
) | {
    "INVALID_ARGUMENTS_ERROR": "this board needs connection details: pass its serial port, e.g. "
    "--serial-port /dev/ttyUSB0, or the MAC or IP address that its BrainFlow page asks for",
    "ANOTHER_BOARD_IS_CREATED_ERROR": "this process already holds a session with the same board "
    "and parameters; disconnect() it first",
}
DEVICE_HINT = "check that the board is switched on, charged and in range, then try again"


def list_boards() -> list[str]:
    """Names of the boards the bridge accepts, for ``--help`` text.

    Returns
    -------
    boards : list of str
        Sorted lower-case BrainFlow board names without the ``_board`` suffix, e.g.
        ``"cyton_daisy"``, ``"muse_s"``, ``"synthetic"``.
    """
    return sorted(_BOARDS)


def _board_key(board: str) -> str:
    """Canonical name of ``board``: lower case, ``-`` as ``_``, no ``_board`` suffix."""
    if not isinstance(board, str):
        raise TypeError(f"board must be a str such as 'cyton', got {type(board).__name__}.")
    key = board.strip().lower().replace("-", "_").removesuffix("_board")
    if key not in _BOARDS:
        raise ValueError(
            f"Unknown or unsupported BrainFlow board={board!r}. Use a board name such as "
            f"synthetic, cyton, cyton_daisy, ganglion, muse_s or unicorn ({len(_BOARDS)} in all: "
            f"see list_boards() or --help)."
        )
    return key


@dataclass(frozen=True)
class BridgeSettings:
    """Which BrainFlow board to open and how to publish it on LSL."""

    board: str
    """BrainFlow board name, any ``BoardIds`` member, case-insensitive, ``_board`` optional, e.g.
    ``"synthetic"``, ``"cyton"``, ``"cyton_daisy"``, ``"ganglion"``, ``"muse_s"``. Stored in
    canonical form (``"CYTON_DAISY_BOARD"`` becomes ``"cyton_daisy"``)."""
    serial_port: str = ""
    """Serial port of the board or its dongle, e.g. ``"/dev/ttyUSB0"`` or ``"COM3"``."""
    mac_address: str = ""
    """Bluetooth MAC address, for boards that take one; empty to let BrainFlow search."""
    ip_address: str = ""
    """IP address, for Wi-Fi boards."""
    ip_port: int = 0
    """IP port, for Wi-Fi boards; 0 for BrainFlow's default."""
    other_info: str = ""
    """Board-specific extra parameter passed through to BrainFlow (``other_info``)."""
    name: str | None = None
    """LSL stream name; ``None`` for ``"BrainFlow-<board>"``."""
    source_id: str | None = None
    """LSL source id; ``None`` for one made of the board and its port or address, so that inlets
    recover the stream when the bridge restarts."""
    chunk_s: float = 0.02
    """How often the board's buffer is pulled and pushed to LSL, s."""
    include_aux: bool = False
    """Append the motion sensors (accelerometer, gyroscope, magnetometer) after the EEG channels,
    in the board's own units (BrainFlow does not normalise them)."""
    log_level: str = "warn"
    """BrainFlow's own log level, process-wide: trace, debug, info, warn, error, critical, off."""

    def __post_init__(self) -> None:
        board = _board_key(self.board)
        object.__setattr__(self, "board", board)
        for field in ("serial_port", "mac_address", "ip_address", "other_info"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"{field} must be a str, got {getattr(self, field)!r}.")
        if not isinstance(self.ip_port, int) or not 0 <= self.ip_port <= 65535:
            raise ValueError(
                f"ip_port must be an int in 0..65535 (0: default), got {self.ip_port!r}."
            )
        if not (math.isfinite(self.chunk_s) and 0 < self.chunk_s <= 1):
            raise ValueError(f"chunk_s must be in (0, 1] s, got {self.chunk_s!r}.")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}."
            )
        for field in ("name", "source_id"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{field} must be a non-empty str or None, got {value!r}.")
        if self.name is None:
            object.__setattr__(self, "name", f"BrainFlow-{board}")
        if self.source_id is None:
            where = self.serial_port or self.mac_address
            if self.ip_address:
                where = f"{self.ip_address}:{self.ip_port}"
            object.__setattr__(
                self, "source_id", f"brainflow-{board}" + (f"-{where}" if where else "")
            )

    @property
    def board_id(self) -> int:
        """BrainFlow's numeric id of the board (``BoardIds`` value)."""
        return _BOARDS[self.board].value

    def input_params(self) -> BrainFlowInputParams:
        """The connection parameters as BrainFlow takes them."""
        params = BrainFlowInputParams()
        for field in ("serial_port", "mac_address", "ip_address", "ip_port", "other_info"):
            setattr(params, field, getattr(self, field))
        return params


@functools.cache
def load_brainflow() -> None:
    """Load BrainFlow's native library once, without ``pkg_resources``' deprecation warning.

    On Python 3.11 BrainFlow 5.x finds its library through ``pkg_resources`` (its
    ``importlib.resources`` path fails for a module), which setuptools 81 removes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
        try:
            BoardShim.get_version()
        except ModuleNotFoundError as err:
            raise RuntimeError(
                "BrainFlow needs pkg_resources to find its library: pip install 'setuptools<81'."
            ) from err


def exit_code_name(err: BrainFlowError) -> str:
    try:
        return BrainFlowExitCodes(err.exit_code).name
    except ValueError:
        return f"error code {err.exit_code}"


def measure_clock_offset(n_reads: int = 10) -> float:
    """``local_clock() - time.time()``, s, from the narrowest of ``n_reads`` bracketed reads."""
    best_width, offset = math.inf, 0.0
    for _ in range(n_reads):
        before = pylsl.local_clock()
        unix = time.time()
        after = pylsl.local_clock()
        if after - before < best_width:
            best_width, offset = after - before, (before + after) / 2 - unix
    return offset
