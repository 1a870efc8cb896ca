"""Whole sessions on a thread, for the engine's session tests and the fault tests:
:class:`SessionThread` runs ``run_session`` beside the test, which steers it over the control
channel and its sources and reads its engine and record."""

from __future__ import annotations

import threading
from pathlib import Path

from bci.engine.session import run_session
from bci.protocol import load_protocol
from tests.conftest import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def session_overrides(prefix: str, *extra: str, record: bool = False) -> list[str]:
    """What every test session sets: its own streams, a free control port, no XDF unless
    asked, and its own participant (a dose ledger of its own, in the tests' ledger folder)."""
    return [f"session.prefix={prefix}", f"session.participant={prefix}",
            "control.address=tcp://127.0.0.1:0",
            f"recording.enabled={str(record).lower()}", *extra]  # fmt: skip


class SessionThread:
    """``run_session`` on a thread, with the engine it builds and what it returned or raised."""

    def __init__(self, name: str, overrides: list[str], out_dir: Path) -> None:
        self.protocol, self.text = load_protocol(name, overrides)
        self.out_dir = out_dir
        self.engine = None
        self.summary = self.record = self.error = None
        self._thread = threading.Thread(target=self._run, name="session", daemon=True)

    def _run(self) -> None:
        try:
            self.summary, self.record = run_session(
                self.protocol, "test", self.text, self.out_dir, progress=False,
                on_engine=lambda engine: setattr(self, "engine", engine),
            )  # fmt: skip
        except BaseException as err:  # handed to the test thread
            self.error = err

    def start(self) -> SessionThread:
        self._thread.start()
        assert wait_for(lambda: self.engine is not None or not self.alive, 60, poll_s=0.05)
        assert self.engine is not None, f"the session did not start: {self.error!r}"
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_until(self, condition, timeout_s: float, what: str) -> None:
        """Wait for ``condition()`` while the session runs; fail saying ``what`` never came."""
        assert wait_for(lambda: condition() or not self.alive, timeout_s, poll_s=0.01)
        assert self.alive and condition(), f"{what} never happened (error: {self.error!r})"

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self.alive, f"the session did not end within {timeout_s} s"
