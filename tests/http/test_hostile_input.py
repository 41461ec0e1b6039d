"""Issue 9's hostile-input probe, kept: every class of input that once got a 500 or was cut.

Each test sends one class to the app as an outsider would (through the Flask test client, on
SQLite and PostgreSQL), asserts a 4xx that says what is wrong, and that the database holds
exactly what it held before. ``CASES`` counts the inputs each class tries (docs/security.md,
issue 9's table). Chunked bodies through a real ``registry serve``: test_hostile_server.py.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from registry.db import Base, make_session_factory
from registry.settings import Settings
from tests.support.web import csrf_of, sign_in

API = "/api/v1"
MIB = 1024 * 1024
Auth = Callable[..., dict[str, str]]

#: Tables whose rows are compared in full; the others (tokens, sessions) by count.
COMPARED = ("configs", "config_versions", "runs", "workers", "version_params", "run_metrics")


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every table's row count, and the full rows of the tables a request could change."""
    out: dict[str, Any] = {}
    with make_session_factory(engine)() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in COMPARED:
                out[table.name] = sorted(map(repr, s.execute(select(table)).all()))
            else:
                out[table.name] = s.scalar(select(func.count()).select_from(table))
    return out


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Cookies over the test client's plain HTTP, for the signed-in web cases."""
    return settings.with_(secure_cookies=False)


@pytest.fixture
def world(client: FlaskClient, auth: Auth) -> dict[str, Any]:
    """A config ``tiny``, one run of it claimed by worker ``w1``: ids and the lease."""
    tiny = {"name": "tiny", "config": {"training": {"seed": 7}}}
    assert client.post(f"{API}/configs", json=tiny, headers=auth()).status_code == 201
    run = client.post(f"{API}/runs", json={"config": "tiny"}, headers=auth())
    assert run.status_code == 201, run.json
    claim = client.post(f"{API}/workers/claim", json={"worker": "w1"}, headers=auth("worker"))
    assert claim.status_code == 200, claim.json
    return {"run": run.json["id"], "lease": claim.json["lease"]}


@pytest.fixture
def unchanged(engine: Engine, world: dict[str, Any]) -> Iterator[None]:
    """Asserts, after the test, that the database is as the world left it."""
    before = snapshot(engine)
    yield
    assert snapshot(engine) == before


def refused(answer: Any, *codes: int) -> None:
    """A 4xx (one of ``codes`` when given) with a message."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.get_data()[:300])
    assert not codes or answer.status_code in codes, (answer.status_code, answer.get_data()[:300])
    assert answer.get_data(), "a refusal says why"


# -- 1. bodies over 1 MiB, with a length or chunked ------------------------------------------

WRITES = [
    "/configs",
    "/configs/tiny/versions",
    "/validate",
    "/runs",
    "/workers/claim",
    "/workers/register",
    "/runs/{run}/heartbeat",
    "/runs/{run}/complete",
]


def _big(fmt: str) -> bytes:
    """A well-formed body just over 1 MiB whose last fields come after the first MiB."""
    if fmt == "json":
        text = json.dumps({"description": "x" * MIB, "name": "late", "config": {}})
    else:
        text = f"description: {'x' * MIB}\nname: late\nconfig: {{}}\n"
    return text.encode()


def _chunked(client: FlaskClient, url: str, data: bytes, **kwargs: Any) -> Any:
    """A body as a chunked request arrives from gunicorn: no length, the stream terminated."""
    return client.post(
        url,
        input_stream=io.BytesIO(data),
        headers={"Transfer-Encoding": "chunked", **kwargs.pop("headers", {})},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
        **kwargs,
    )


def test_bodies_over_1_mib_are_413_however_they_arrive(
    client: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for path in WRITES:
        url = API + path.format(**world)
        for fmt in ("json", "yaml"):
            data, ctype = _big(fmt), f"application/{fmt}"
            sized = client.post(url, data=data, content_type=ctype, headers=auth())
            chunked = _chunked(client, url, data, content_type=ctype, headers=auth())
            for answer in (sized, chunked):
                refused(answer, 413)
                assert answer.json["code"] == "payload_too_large"


@pytest.fixture
def web(client: FlaskClient, tokens: dict[str, str], world: dict[str, Any]) -> FlaskClient:
    """The test client signed in as an admin (before ``unchanged`` looks)."""
    sign_in(client, tokens["admin"])
    return client


def test_web_forms_over_1_mib_are_413_however_they_arrive(
    web: FlaskClient, unchanged: None
) -> None:
    client = web
    csrf = csrf_of(client.get("/configs/-/new").get_data(as_text=True))
    form = f"csrf_token={csrf}&action=save&name=late&description={'x' * MIB}".encode()
    for url in ("/configs/-/new", "/configs/tiny/new", "/configs/tiny/runs", "/login"):
        ctype = "application/x-www-form-urlencoded"
        refused(client.post(url, data=form, content_type=ctype), 413)
        refused(_chunked(client, url, form, content_type=ctype), 413)


def test_a_chunked_body_under_the_limit_is_read_whole(
    client: FlaskClient, auth: Auth, engine: Engine
) -> None:
    text = f"name: whole\ndescription: {'x' * 9000}\nmessage: the last line\nconfig: {{}}\n"
    answer = _chunked(
        client, f"{API}/configs", text.encode(), content_type="application/yaml", headers=auth()
    )
    assert answer.status_code == 201, answer.json
    got = client.get(f"{API}/configs/whole/versions/1", headers=auth()).json
    assert got["message"] == "the last line"


# -- 2. YAML types JSON lacks, in worker payloads and documents ------------------------------

#: Values (under a key) and keys, each refused where YAML would build something JSON lacks.
YAML_VALUES = [
    "!!timestamp 2024-01-01",
    "!!binary aGk=",
    "!!set {a, b}",
    "!!omap [{a: 1}]",
    "!!pairs [{a: 1}]",
    ".nan",
    "-.inf",
    "1e999",
    "9" * 5000,
    "!!python/object/apply:os.system [true]",
    "!local x",
]
YAML_KEYS = ["1", "on", "~", "[a]", "{a: 1}"]


INNER = "@inner@"


def _payloads(world: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, role, body) with :data:`INNER` in each free-form field a caller fills."""
    lease, run = world["lease"], world["run"]
    done = {"lease": lease, "status": "succeeded"}
    return [
        (f"/runs/{run}/heartbeat", "worker", {"lease": lease, "progress": INNER}),
        (f"/runs/{run}/complete", "worker", {**done, "metrics": INNER}),
        (f"/runs/{run}/complete", "worker", {**done, "provenance": INNER}),
        (f"/runs/{run}/complete", "worker", {**done, "error": INNER}),
        ("/workers/register", "worker", {"worker": "w1", "devices": INNER}),
        ("/configs", "admin", {"name": "typed", "config": {"data": INNER}}),
        ("/validate", "admin", {"config": {"data": INNER}}),
    ]


def _render(body: dict[str, Any], inner: str) -> str:
    """``body`` as JSON text (also YAML flow style) with ``inner`` spliced in as written."""
    return json.dumps(body).replace(json.dumps(INNER), inner)


def _send(client: FlaskClient, auth: Auth, path: str, role: str, text: str, fmt: str) -> Any:
    return client.post(API + path, data=text, content_type=f"application/{fmt}", headers=auth(role))


def test_yaml_types_json_lacks_are_400_naming_the_place(
    client: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for inner in [f"{{x: {v}}}" for v in YAML_VALUES] + [f"{{{k}: 1}}" for k in YAML_KEYS]:
        for path, role, body in _payloads(world):
            answer = _send(client, auth, path, role, _render(body, inner), "yaml")
            refused(answer, 400)
            assert answer.json["code"] == "parse_error" and answer.json["column"] > 1, answer.json


def test_an_unquoted_yaml_date_is_text_as_in_yaml_1_2(
    client: FlaskClient, auth: Auth, world: dict[str, Any]
) -> None:
    body = f"lease: {json.dumps(world['lease'])}\nprogress: {{at: 2024-01-01 10:00:00}}\n"
    url = f"{API}/runs/{world['run']}/heartbeat"
    answer = client.post(url, data=body, content_type="application/yaml", headers=auth("worker"))
    assert answer.status_code == 200, answer.json
    run = client.get(f"{API}/runs/{world['run']}", headers=auth()).json
    assert run["progress"] == {"at": "2024-01-01 10:00:00"}


# -- 3. nesting ------------------------------------------------------------------------------

DEPTHS = (65, 900, 5000)


def test_deep_nesting_is_400_in_json_and_yaml(
    client: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for depth in DEPTHS:
        deep = "[" * depth + "]" * depth  # the same text in JSON and in YAML's flow style
        for path, role, body in _payloads(world):
            for fmt in ("json", "yaml"):
                answer = _send(client, auth, path, role, _render(body, deep), fmt)
                refused(answer, 400)
                assert "nest" in answer.json["error"], answer.json


def test_nesting_within_the_limit_is_stored(
    client: FlaskClient, auth: Auth, world: dict[str, Any]
) -> None:
    path, role, body = _payloads(world)[0]
    answer = _send(
        client, auth, path, role, _render(body, '{"x": ' + "[" * 60 + "]" * 60 + "}"), "json"
    )
    assert answer.status_code == 200, answer.json


# -- 4. ids outside 1..2**63-1 in routes -----------------------------------------------------

BAD_IDS = [
    "0",
    "2147483647",  # the largest id (PostgreSQL's INTEGER): routed, and simply not found
    "2147483648",
    "9223372036854775808",
    "18446744073709551616",
    "1" + "0" * 30,
    "9" * 5000,
    "-1",
    "1e3",
    "0x10",
    "%C2%B2",  # superscript two
    "%D9%A1",  # Arabic-Indic one
    "%EF%BC%91",  # fullwidth one
]
API_ID_ROUTES = [
    ("GET", "/runs/{id}"),
    ("POST", "/runs/{id}/cancel"),
    ("POST", "/runs/{id}/reproduce"),
    ("POST", "/runs/{id}/heartbeat"),
    ("POST", "/runs/{id}/complete"),
    ("POST", "/runs/{id}/release"),
    ("GET", "/configs/tiny/versions/{id}"),
    ("GET", "/configs/tiny/diff?from={id}&to=1"),
]
WEB_ID_ROUTES = [
    ("GET", "/runs/{id}"),
    ("POST", "/runs/{id}/cancel"),
    ("POST", "/runs/{id}/reproduce"),
    ("GET", "/configs/tiny/versions/{id}.yaml"),
]


def test_ids_out_of_range_are_404_on_every_api_route(
    client: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for method, route in API_ID_ROUTES:
        body: dict[str, Any] = {"lease": world["lease"]}
        if route.endswith("complete"):
            body.update(status="failed", metrics={})
        for ident in BAD_IDS:
            url = API + route.format(id=ident)
            answer = client.open(url, method=method, json=body, headers=auth())  # admin: all
            refused(answer)
            if route.startswith("/runs/"):
                assert answer.status_code == 404, (route, ident, answer.json)


def test_ids_out_of_range_are_404_on_every_web_route(web: FlaskClient, unchanged: None) -> None:
    csrf = csrf_of(web.get("/configs/tiny").get_data(as_text=True))
    for method, route in WEB_ID_ROUTES:
        for ident in BAD_IDS:
            answer = web.open(route.format(id=ident), method=method, data={"csrf_token": csrf})
            refused(answer, 404)


# -- 5. digits that are not ASCII, in query strings and forms --------------------------------

DIGITS = ["²", "\u0661", "\uff11", "1_0", "+1", " 1 2 "]  # superscript, Arabic-Indic, fullwidth


def test_non_ascii_digits_in_the_api_are_4xx(
    client: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for raw in DIGITS:
        for url in (f"/runs?limit={raw}", f"/configs/tiny/diff?from={raw}&to=1"):
            refused(client.get(API + url, headers=auth()))
        body = {"config": "tiny", "version": raw, "kind": "evaluate", "from_run": raw}
        refused(client.post(f"{API}/runs", json=body, headers=auth()), 422)


def test_non_ascii_digits_in_pages_and_forms_are_400_naming_the_parameter(
    web: FlaskClient, world: dict[str, Any], unchanged: None
) -> None:
    csrf = csrf_of(web.get("/configs/tiny").get_data(as_text=True))
    for raw in DIGITS:
        answers = {
            "v": web.get("/configs/tiny", query_string={"v": raw}),
            "run": web.get("/compare", query_string={"run": [raw, "1"]}),
            "from_run": web.post(
                "/configs/tiny/runs",
                data={"csrf_token": csrf, "kind": "evaluate", "from_run": raw, "version": "1"},
            ),
            "parent": web.post(
                "/configs/tiny/new",
                data={"csrf_token": csrf, "action": "save", "parent": raw, "yaml": "{}"},
            ),
        }
        for name, answer in answers.items():
            refused(answer, 400)
            assert name in answer.get_data(as_text=True), (name, raw)


# -- 6. crafted cursors ----------------------------------------------------------------------


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


#: (signature, how many values) of each order: a crafted cursor must match it to get far.
ORDERS = {
    "id DESC": ("column:id:desc", 1),
    "created_at ASC": ("column:created_at:asc", 1),
    "metrics.val_loss": ("metric:val_loss:asc", 1),
    "params.training.seed DESC": ("param:training.seed:desc", 2),
}
#: Cursor bodies, ``{o}`` the order's signature and ``{v}`` a value in each of its slots.
CRAFTED = [
    ('{{"o":"{o}","v":[{v}],"id":' + "9" * 30 + "}}", "1"),
    ('{{"o":"{o}","v":[{v}],"id":1}}', "9" * 30),
    ('{{"o":"{o}","v":[{v}],"id":1}}', "9223372036854775808"),
    ('{{"o":"{o}","v":[{v}],"id":-9223372036854775808}}', "1"),
    ('{{"o":"{o}","v":[{v}],"id":1,"x":' + "[" * 5000 + "]" * 5000 + "}}", "1"),
    ('{{"o":"{o}","v":[{v}],"id":1}}', "[" * 900 + "]" * 900),
    ('{{"o":"{o}","v":[{v}],"id":1}}', "NaN"),
    ('{{"o":"{o}","v":[{v}],"id":1}}', "1e999"),
    ('{{"o":"{o}","v":[{v}],"id":1}}', '{"a": 1}'),
    ('{{"o":"{o}","v":[{v}],"id":1.5}}', "1"),
    ('{{"o":"{o}","v":[{v}],"id":true}}', "1"),
    ('{{"o":"{o}","v":{{"a":{v}}},"id":1}}', "1"),
]
JUNK = [
    _cursor("[1, 2, 3]"),
    _cursor('"text"'),
    _cursor("null"),
    "!!!",
    "A" * 5000,
    "\u00e9",
    "\x00",
]


def _cursors(order: str) -> list[str]:
    signature, slots = ORDERS[order]
    crafted = [
        _cursor(body.format(o=signature, v=",".join([value] * slots))) for body, value in CRAFTED
    ]
    return crafted + JUNK


def test_crafted_cursors_are_400(
    web: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for order in ORDERS:
        for cursor in _cursors(order):
            query = {"cursor": cursor, "order_by": order}
            answer = web.get(f"{API}/runs", query_string=query, headers=auth())
            refused(answer, 400)
            assert answer.json["code"] in ("invalid_cursor", "bad_request"), answer.json
            page = web.get("/runs", query_string={"cursor": cursor, "order": order})
            assert page.status_code in (302, 400), page.status_code  # back to the first page


# -- 7. filters past SQLite's expression depth -----------------------------------------------

FILTERS = [
    " OR ".join(["id = 1"] * 1000),
    " AND ".join(["id=1"] * 1000),
    " OR ".join(["metrics.val_loss < 1"] * 101),
    " OR ".join(["params.training.seed = 1"] * 101),
    "NOT " * 1000 + "id = 1",
    "(" * 1000 + "id = 1" + ")" * 1000,
    " OR ".join(f"({' AND '.join(['id = 1'] * 10)})" for _ in range(20)),
]


def test_filters_too_big_for_the_database_are_400_with_a_position(
    web: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    for expr in FILTERS:
        answer = web.get(f"{API}/runs", query_string={"filter": expr}, headers=auth())
        refused(answer, 400)
        assert answer.json["code"] == "filter_error" and answer.json["position"] >= 0
        page = web.get("/runs", query_string={"filter": expr})
        refused(page, 400)


def test_the_largest_filter_allowed_runs_on_the_database(
    client: FlaskClient, auth: Auth, world: dict[str, Any]
) -> None:
    kinds = ["metrics.val_loss < 1", "params.training.seed = 7", "status != 'x'", "id IN (1, 2)"]
    expr = " OR ".join(f"NOT ({kinds[i % 4]})" for i in range(100))
    answer = client.get(f"{API}/runs", query_string={"filter": expr}, headers=auth())
    assert answer.status_code == 200, answer.json
    nested = "(" * 31 + " OR ".join(kinds * 25) + ")" * 31
    answer = client.get(f"{API}/runs", query_string={"filter": nested}, headers=auth())
    assert answer.status_code == 200, answer.json


# -- 8. free text: the web form's checks are the API's ---------------------------------------

TEXTS = ["a\x00b", "\x1b[31mred", "bell\x07", "del\x7f", "c1\x85c1", "x" * 10_001, "x" * 100_000]


def test_free_text_is_refused_alike_by_the_api_and_the_form(
    web: FlaskClient, auth: Auth, world: dict[str, Any], unchanged: None
) -> None:
    csrf = csrf_of(web.get("/configs/-/new").get_data(as_text=True))
    for text in TEXTS:
        for field in ("description", "message"):
            body = {"name": "texty", "config": {}, field: text}
            refused(web.post(f"{API}/configs", json=body, headers=auth()), 400, 422)
            form = {"csrf_token": csrf, "action": "save", "yaml": "{}", "name": "texty"}
            page = web.post("/configs/-/new", data={**form, field: text})
            refused(page, 422)
            assert f"#f-{field}" in page.get_data(as_text=True)
            version = {"config": {"model": {"num_hidden_layers": 3}}, "message": text}
            url = f"{API}/configs/tiny/versions"
            refused(web.post(url, json=version, headers=auth()), 400, 422)
            page = web.post("/configs/tiny/new", data={**form, "message": text})
            refused(page, 422)


def test_tabs_and_line_ends_are_text(web: FlaskClient, auth: Auth, world: dict[str, Any]) -> None:
    text = "line one\r\nline two\n\tindented é 名前"
    body = {"name": "texty", "config": {}, "description": text, "message": text}
    assert web.post(f"{API}/configs", json=body, headers=auth()).status_code == 201
    got = web.get(f"{API}/configs/texty", headers=auth()).json
    assert got["description"] == text and got["versions"][0]["message"] == text


# -- 9. 64-bit seeds ------------------------------------------------------------------------


def test_a_seed_of_2_to_the_32_minus_1_queues_and_is_claimed(
    client: FlaskClient, auth: Auth
) -> None:
    seed = 2**32 - 1
    body = {"name": "seedy", "config": {"training": {"seed": seed}}}
    assert client.post(f"{API}/configs", json=body, headers=auth()).status_code == 201
    run = client.post(f"{API}/runs", json={"config": "seedy"}, headers=auth())
    assert run.status_code == 201, run.json
    assert run.json["seed"] == seed
    claim = client.post(f"{API}/workers/claim", json={"worker": "w"}, headers=auth("worker"))
    assert claim.json["run"]["seed"] == seed and claim.json["config"]["training"]["seed"] == seed


#: How many inputs each class tries (docs/security.md, issue 9's table).
CASES = {
    "body over 1 MiB, with a length or chunked (API, forms)": len(WRITES) * 2 * 2 + 4 * 2,
    "YAML types JSON lacks (worker payloads, documents)": (len(YAML_VALUES) + len(YAML_KEYS)) * 7,
    "nesting past 64 levels (JSON and YAML)": len(DEPTHS) * 7 * 2,
    "ids outside 1..2**31-1 (8 API, 4 web routes)": len(BAD_IDS) * 12,
    "digits that are not ASCII (query strings, forms)": len(DIGITS) * 7,
    "crafted cursors (API and page)": len(ORDERS) * (len(CRAFTED) + len(JUNK)) * 2,
    "filters past the database's expression depth": len(FILTERS) * 2,
    "control characters and length in free text (API, form)": len(TEXTS) * 2 * 4,
}
