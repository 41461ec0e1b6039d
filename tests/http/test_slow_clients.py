"""Slow clients cannot stop the service deployed as docs/deploy.md says: `registry serve` behind
the nginx of deploy/nginx, which reads every request in full before gunicorn sees it.

The attack: a hundred connections send `POST /login` with `Content-Length: 1000` and a few
bytes of body, then wait. Straight at gunicorn's threads that starves /api/v1/health; through
the proxy the health check keeps answering within a second while all of them are held open.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.procs import BIN, ROOT, free_port, start, start_server, wait_for

pytestmark = pytest.mark.slow

TEMPLATE = ROOT / "deploy" / "nginx" / "registry.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SLOW_CLIENTS = 100

#: The parts of nginx.conf that Debian's own file would give: here, paths under the test's
#: folder, one worker, logs to stderr. The server blocks are deploy/'s, as shipped.
MAIN_CONF = """
user {user};
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/registry.conf;
}}
"""


@dataclass
class Proxy:
    """nginx in front of `registry serve`: its HTTPS and HTTP addresses and the CA to trust."""

    https_port: int
    http_port: int
    cert: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def render(values: dict[str, str]) -> str:
    """deploy/'s template with its ${REGISTRY_...} names filled in, as envsubst would."""
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${REGISTRY_" not in text
    return text


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    """`registry serve` (REGISTRY_TLS=1) on SQLite, and nginx started here as a child."""
    if not Path(NGINX).exists() or shutil.which("openssl") is None:
        pytest.skip("needs Debian's nginx and openssl (make nginx)")
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    env = {**os.environ, "DATABASE_URL": db}
    subprocess.run(
        [str(BIN / "registry"), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    server = start_server({"DATABASE_URL": db, "REGISTRY_TLS": "1"}, tmp_path / "serve.log")
    conf = tmp_path / "nginx"
    conf.mkdir()
    cert, key = self_signed(conf)
    https_port, http_port = free_port(), free_port()
    site = render(
        {
            "REGISTRY_SERVER_NAME": "localhost 127.0.0.1",
            "REGISTRY_HTTPS_LISTEN": f"127.0.0.1:{https_port}",
            "REGISTRY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "REGISTRY_TLS_CERT": str(cert),
            "REGISTRY_TLS_KEY": str(key),
            "REGISTRY_UPSTREAM": server.url.removeprefix("http://"),
        }
    )
    (conf / "registry.conf").write_text(site)
    user = pwd.getpwuid(os.geteuid()).pw_name
    (conf / "nginx.conf").write_text(MAIN_CONF.format(user=user, d=conf))
    args = [NGINX, "-p", str(conf), "-c", str(conf / "nginx.conf"), "-e", "stderr"]
    nginx = start([*args, "-g", "daemon off;"], {}, tmp_path / "nginx.log")
    found = Proxy(https_port, http_port, cert)

    def up() -> bool:
        assert nginx.popen.poll() is None, nginx.output()
        try:
            return requests.get(f"{found.url}/api/v1/health", verify=cert, timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_for(up, 30, "nginx to answer /api/v1/health")
        yield found
    finally:
        nginx.stop()
        server.proc.stop()


def slow_post(proxy: Proxy, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A connection that announces a 1000-byte body, sends two bytes and waits."""
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    conn = context.wrap_socket(raw, server_hostname="localhost")
    conn.sendall(
        b"POST /login HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nab"
    )
    return conn


def test_slow_bodies_do_not_stop_the_service(proxy: Proxy) -> None:
    context = ssl.create_default_context(cafile=str(proxy.cert))
    held = [slow_post(proxy, context) for _ in range(SLOW_CLIENTS)]
    try:
        time.sleep(0.5)  # the proxy has them all; gunicorn has seen none
        for _ in range(10):
            started = time.monotonic()
            answer = requests.get(f"{proxy.url}/api/v1/health", verify=str(proxy.cert), timeout=1)
            assert answer.status_code == 200 and time.monotonic() - started < 1.0
            assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
            time.sleep(0.1)
        # They were held, not dropped: finishing a body gets its answer (no CSRF token: 400).
        for conn in held[:5]:
            conn.sendall(b"c" * 998)
            assert conn.recv(64).startswith(b"HTTP/1.1 400")
    finally:
        for conn in held:
            conn.close()


def test_the_proxy_redirects_to_https_and_refuses_large_bodies(proxy: Proxy) -> None:
    plain = requests.get(
        f"http://127.0.0.1:{proxy.http_port}/runs", allow_redirects=False, timeout=5
    )
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    assert "Strict-Transport-Security" not in plain.headers  # never over plain HTTP
    context = ssl.create_default_context(cafile=str(proxy.cert))
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(
            b"POST /api/v1/configs HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{"
        )
        assert conn.recv(64).startswith(b"HTTP/1.1 413")
