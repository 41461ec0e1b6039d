"""Workers and queues: who is alive, what each runs, and queues nobody listens to."""

from __future__ import annotations

from typing import Any

from flask import g, render_template

from registry.http import context
from registry.http.web.blueprint import bp
from registry.http.web.signin import requires
from registry.services import queue, summaries


@bp.get("/workers")
@requires("read")
def workers() -> Any:
    """Each worker's host, device, last heartbeat and run; each queue's length."""
    lease = context.settings().lease_seconds
    # A worker heartbeats well within its lease; two leases of silence means it is gone.
    workers = summaries.worker_rows(g.db, queue.db_now(g.db), live_seconds=2 * lease)
    queues = summaries.queue_rows(g.db, workers)
    return render_template(
        "workers.html",
        workers=workers,
        queues=queues,
        stranded=[q for q in queues if q.stranded],
        live_seconds=2 * lease,
    )
