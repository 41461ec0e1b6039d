"""A tracking server that holds every request until the test lets it go: a slow MLflow.

The run pages read MLflow over its REST API when the tracking URI is ``http://``; this server
makes that read as slow as the test wants (a real network wait in MLflow's own client), then
answers as MLflow does for a run it does not know (404 ``RESOURCE_DOES_NOT_EXIST``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class SlowMlflow:
    """The server's URI, set when a request arrived, and the event that releases them."""

    uri: str
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    paths: list[str] = field(default_factory=list)


@contextmanager
def slow_mlflow(hold_s: float = 60.0) -> Iterator[SlowMlflow]:
    """Serve on a free loopback port; each request waits for ``release`` (at most ``hold_s``)."""
    state = SlowMlflow("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.paths.append(self.path)
            state.arrived.set()
            state.release.wait(hold_s)
            body = json.dumps(
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run not found"}
            ).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.uri = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
