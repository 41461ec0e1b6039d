"""Page helpers: the CSRF token of a page, signing in through the form, the form's inputs."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in a page."""
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: FlaskClient, token: str) -> None:
    """Sign ``client`` in with an API token, through the form."""
    page = client.get("/login").get_data(as_text=True)
    answer = client.post(
        "/login", data={"method": "token", "token": token, "csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)


def form_data(doc: dict[str, Any]) -> dict[str, str]:
    """The config form's inputs for ``doc``."""
    from registry.http.web.configform import values_of

    values = values_of(doc)
    return {k: v for k, v in values.items() if v != "false"}
