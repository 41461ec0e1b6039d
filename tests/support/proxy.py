"""A TCP proxy that a test can cut: the network between a worker and the service.

``cut("refuse")`` closes every connection and closes each new one at once (a peer that went
away); ``cut("hang")`` closes every connection and holds each new one open without forwarding a
byte (a partition: requests wait for their timeout). ``heal()`` forwards again.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit


class Proxy:
    """127.0.0.1:<port> forwarding to ``target`` (a ``http://host:port`` URL)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.mode: str | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, mode: str = "refuse") -> None:
        """Cut the line: ``refuse`` or ``hang`` new connections; close the open ones."""
        assert mode in ("refuse", "hang")
        self.mode = mode
        self._close_open()

    def heal(self) -> None:
        """Forward again (connections held by a ``hang`` are closed)."""
        self.mode = None
        self._close_open()

    def close(self) -> None:
        self.listener.close()
        self._close_open()

    def _close_open(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _track(self, *conns: socket.socket) -> None:
        with self._lock:
            self._open.extend(conns)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.mode == "refuse":
                client.close()
                continue
            self._track(client)
            if self.mode == "hang":
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for conn in (src, dst):
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@contextmanager
def proxy_to(target: str) -> Iterator[Proxy]:
    """A Proxy to ``target`` for the block."""
    proxy = Proxy(target)
    try:
        yield proxy
    finally:
        proxy.close()
