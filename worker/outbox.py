"""Finished results kept on local disk until the service has accepted them.

The daemon writes a run's completion here *before* it reports it, and deletes the file only
when the service answered 200 (recorded, or already recorded: completion is idempotent) or
409 (the lease is stale; the result can never be recorded). A crash or an unreachable service
in between leaves the file, and the next start of the daemon sends it first.

A completion carries its claim's lease, which lets anyone holding it report that run: the
files are the owner's alone (0600), and their names hold a digest of the lease, never the lease.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry import errors

log = logging.getLogger(__name__)

#: Answers after which a report is dropped: it was recorded, or it never can be.
FINAL = (errors.Conflict, errors.NotFound, errors.BadRequest, errors.InvalidInput)


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/config-registry/outbox`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "config-registry" / "outbox"


@dataclass(frozen=True)
class Report:
    """One completion waiting to be accepted."""

    path: Path
    run_id: int
    body: dict[str, Any]


Send = Callable[[int, dict[str, Any]], Any]


class Outbox:
    """A folder of ``run-<id>-lease-<digest>.json`` completions, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, run_id: int, body: dict[str, Any]) -> Report:
        """Store the completion of ``run_id`` durably (write, fsync, rename), owner-only."""
        tag = hashlib.sha256(str(body["lease"]).encode("utf-8")).hexdigest()[:16]
        path = self.directory / f"run-{run_id}-lease-{tag}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when a leftover .tmp had other permissions
        with open(fd, "w", encoding="utf-8") as fh:
            json.dump({"run_id": run_id, "body": body}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return Report(path, run_id, body)

    def pending(self) -> list[Report]:
        """Every stored completion, oldest first; unreadable files are set aside."""
        reports = []
        files = sorted(self.directory.glob("run-*.json"), key=lambda p: p.stat().st_mtime)
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                reports.append(Report(path, int(data["run_id"]), dict(data["body"])))
            except (OSError, ValueError, KeyError, TypeError):
                log.error("unreadable outbox entry %s; renamed to .bad", path)
                path.rename(path.with_suffix(".bad"))
        return reports

    def deliver(self, report: Report, send: Send) -> bool:
        """Send one report; True (and the file removed) once the service answered for good.

        False leaves it for later: the service is unreachable, failing (5xx) or refused the
        token (401/403, which an operator can fix).
        """
        try:
            send(report.run_id, report.body)
        except FINAL as exc:
            log.warning(
                "run %s (%s): the service refused the result for good (%s: %s)",
                report.run_id,
                report.path.name,
                exc.code,
                exc.message,
            )
        except errors.RegistryError as exc:
            log.warning("run %s: result kept in the outbox (%s)", report.run_id, exc.message)
            return False
        report.path.unlink(missing_ok=True)
        return True

    def flush(self, send: Send) -> int:
        """Deliver every stored report in order; stop at the first that must wait. Returns
        how many are still waiting."""
        waiting = self.pending()
        while waiting and self.deliver(waiting[0], send):
            waiting.pop(0)
        return len(waiting)
