"""How a ``registry-worker`` is told to stop: signals, and the pid file ``--drain`` reads.

- SIGTERM or SIGINT: a warm stop (the run stops at its next step and is handed back); a second
  one exits at once.
- SIGUSR1: a drain (claim nothing new, finish the current run and report it, then exit 0).
  ``registry-worker --drain --pid-file F`` sends it to the daemon that holds ``F``;
  ``systemctl reload registry-worker@N`` sends it too (the unit's ExecReload).

The pid file is held with an exclusive ``flock`` for the daemon's whole life, so ``--drain``
signals only a live daemon: a stale file (its daemon gone, its pid perhaps reused by another
process, which SIGUSR1 would kill) is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import IO

log = logging.getLogger("worker")


class _Waking(threading.Event):
    """An event that also sets ``wake`` (whoever sets it, a handler or a test)."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


class StopSignal:
    """First SIGTERM/SIGINT: set the warm-stop event; second: leave now. SIGUSR1: drain."""

    def __init__(self) -> None:
        self.wake = threading.Event()  # set with either below: an idle wait ends now
        self.event = _Waking(self.wake)  # warm stop: stop the run, hand it back
        self.drain = _Waking(self.wake)  # drain: finish the run, claim no other

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)
        signal.signal(signal.SIGUSR1, self.handle_drain)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.warning(
            "%s: stopping at the next step and handing the run back (again to exit now)",
            signal.Signals(signum).name,
        )
        self.event.set()

    def handle_drain(self, _signum: int, _frame: FrameType | None) -> None:
        log.warning("SIGUSR1: draining: no new claims; exiting after the current run")
        self.drain.set()

    @property
    def claiming(self) -> bool:
        """True while the daemon may claim another run (neither stopping nor draining)."""
        return not (self.event.is_set() or self.drain.is_set())


class PidFileError(RuntimeError):
    """The pid file is held by another live daemon, or names no live daemon to drain."""


class PidFile:
    """``path`` holding this process's pid under an exclusive lock, for as long as it lives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def __enter__(self) -> PidFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="ascii")  # held until __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise PidFileError(f"{self.path} is held by a running registry-worker") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()  # releases the lock
            self._handle = None


def send_drain(path: Path) -> int:
    """SIGUSR1 to the live daemon holding ``path``; its pid. PidFileError when none holds it."""
    try:
        with open(path, encoding="ascii") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()  # held: its daemon is alive
            else:
                raise PidFileError(f"{path} is stale: the registry-worker that wrote it is gone")
    except FileNotFoundError:
        raise PidFileError(f"{path} does not exist: no registry-worker runs with it") from None
    if not text.isdigit():
        raise PidFileError(f"{path} holds no pid ({text!r})")
    os.kill(int(text), signal.SIGUSR1)
    return int(text)


def drain(pid_file: Path | None) -> int:
    """``registry-worker --drain``: SIGUSR1 to the daemon holding ``pid_file``; 0 once sent."""
    if pid_file is None:
        log.error("--drain needs --pid-file, the file the daemon was started with")
        return 2
    try:
        pid = send_drain(pid_file)
    except PidFileError as exc:
        log.error("%s", exc)
        return 2
    log.info("sent SIGUSR1 to registry-worker pid %d: it exits after its current run", pid)
    return 0
