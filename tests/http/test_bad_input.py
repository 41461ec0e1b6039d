"""Bad bodies get 400/413/422 with a useful message, never a 500, and change nothing."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from registry.db import make_session_factory
from registry.models import Config, ConfigVersion

API = "/api/v1"
WRITES = [f"{API}/configs", f"{API}/configs/tiny/versions", f"{API}/validate"]


def rows(engine: Engine) -> tuple[int, int]:
    with make_session_factory(engine)() as s:
        return (
            s.scalar(select(func.count()).select_from(Config)) or 0,
            s.scalar(select(func.count()).select_from(ConfigVersion)) or 0,
        )


@pytest.fixture
def seeded(client: FlaskClient, auth, engine: Engine) -> tuple[int, int]:
    """One config "tiny" with one version; the row counts that must not change."""
    r = client.post(f"{API}/configs", json={"name": "tiny", "config": {}}, headers=auth())
    assert r.status_code == 201
    return rows(engine)


def post(client: FlaskClient, auth, url: str, data: Any, ctype: str = "application/json") -> Any:
    return client.post(url, data=data, content_type=ctype, headers=auth())


@pytest.mark.parametrize("url", WRITES)
def test_malformed_json_is_400_with_position(client, auth, engine, seeded, url) -> None:
    r = post(client, auth, url, '{"name": "x",\n  "config": {,}}')
    assert r.status_code == 400 and r.json["code"] == "parse_error"
    assert (r.json["line"], r.json["column"]) == (2, 14)
    assert "line 2" in r.json["error"]
    assert rows(engine) == seeded


@pytest.mark.parametrize("url", WRITES)
def test_malformed_yaml_is_400_with_position(client, auth, engine, seeded, url) -> None:
    r = post(client, auth, url, "name: x\nconfig:\n  training: [1, 2\n", "application/yaml")
    assert r.status_code == 400 and r.json["line"] >= 1 and r.json["column"] >= 1
    assert rows(engine) == seeded


def test_body_over_1_mib_is_413_json(client, auth, engine, seeded) -> None:
    big = json.dumps({"name": "big", "config": {}, "description": "x" * (1024 * 1024)})
    for url in WRITES:
        r = post(client, auth, url, big)
        assert r.status_code == 413, url
        assert r.is_json and r.json["code"] and r.json["error"]
    assert rows(engine) == seeded


def test_yaml_bomb_and_python_tags_are_400_fast(client, auth, engine, seeded) -> None:
    bomb = "\n".join(
        ['a: &a ["x","x","x","x","x","x","x","x","x"]']
        + [
            f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ]
        + ["name: bomb", "config: {}"]
    )
    evil = [
        bomb,
        "name: x\nconfig: !!python/object/apply:os.system ['true']\n",
        "name: !!python/name:os.system x\nconfig: {}\n",
        "!!python/object:registry.models.Config {}\n",
    ]
    for url in WRITES:
        for text in evil:
            start = time.monotonic()
            r = post(client, auth, url, text, "application/yaml")
            assert r.status_code == 400, (url, text[:40], r.json)
            assert time.monotonic() - start < 2
    assert rows(engine) == seeded


def test_wrong_types_are_422_naming_each_field(client, auth, engine, seeded) -> None:
    r = post(
        client,
        auth,
        f"{API}/configs",
        json.dumps(
            {"name": 7, "config": [1], "description": {"a": 1}, "message": False, "extra": 1}
        ),
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json["errors"]}
    assert {"name", "config", "description", "message", "extra"} <= fields
    v = post(
        client,
        auth,
        f"{API}/configs/tiny/versions",
        json.dumps({"config": {}, "parent_version": "1"}),
    )
    assert v.status_code == 422 and [e["field"] for e in v.json["errors"]] == ["parent_version"]
    missing = post(client, auth, f"{API}/configs", json.dumps({"name": "n"}))
    assert missing.status_code == 422 and missing.json["errors"][0]["field"] == "config"
    doc = post(
        client,
        auth,
        f"{API}/configs",
        json.dumps({"name": "n", "config": {"training": {"learning_rate": "fast", "seed": 1.5}}}),
    )
    assert doc.status_code == 422
    assert {"training.learning_rate", "training.seed"} <= {e["field"] for e in doc.json["errors"]}
    assert rows(engine) == seeded


@pytest.mark.parametrize(
    "data",
    [
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"42",
        b"true",  # not an object
        b'{"name": "n", "config": NaN}',
        b'{"name": "n", "config": {"training": {"learning_rate": Infinity}}}',
        b'{"name": "n", "config": {"training": {"learning_rate": 1e999}}}',
        b'{"name": "n", "config": {"training": {"seed": ' + b"9" * 5000 + b"}}}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"name": "n", "config": {}}\x00',
        b"\xff\xfe{}",
        b'{"name": "n", "name": "m", "config": {}}',
    ],
)
def test_hostile_json_is_a_4xx(client, auth, engine, seeded, data: bytes) -> None:
    for url in WRITES:
        r = client.post(url, data=data, content_type="application/json", headers=auth())
        assert 400 <= r.status_code < 500, (url, data[:40], r.status_code)
        assert r.is_json and r.json["error"]
    assert rows(engine) == seeded


@pytest.mark.parametrize(
    "config",
    [
        {"training": {"seed": 2**80}},
        {"training": {"num_training_steps": -1}},
        {"model": {"model_dim": 0}},
        {"training": {"learning_rate": 1e308}},
        {"model": {"vocab_size": 10**30}},
    ],
)
def test_extreme_numbers_in_the_document(client, auth, engine, config: Any) -> None:
    r = client.post(f"{API}/configs", json={"name": "odd", "config": config}, headers=auth())
    assert r.status_code in (201, 422), r.json
    if r.status_code == 201:  # if it was stored, it reads back as it was hashed
        got = client.get(f"{API}/configs/odd/versions/1", headers=auth())
        assert got.status_code == 200 and got.json["hash"] == r.json["hash"]
    else:
        assert r.json["errors"] and rows(engine) == (0, 0)


@pytest.mark.parametrize(
    "config", ["generation: {temperature: .nan}", "training: {learning_rate: -.inf}"]
)
def test_nan_and_infinity_in_yaml_text_are_400_like_json(client, auth, engine, config) -> None:
    r = client.post(f"{API}/configs", json={"name": "odd", "config": config}, headers=auth())
    assert r.status_code == 400 and r.json["code"] == "parse_error", r.json
    assert "finite" in r.json["error"] and r.json["line"] == 1
    assert rows(engine) == (0, 0)


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "",
        "application/yaml; charset=latin-1",
    ],
)
def test_odd_content_types(client, auth, engine, seeded, ctype: str) -> None:
    for body in (b"name=x&config=y", b"--x\r\n\r\n--x--", b"{}", b'{"config": {}}'):
        for url in WRITES:
            r = client.post(url, data=body, content_type=ctype, headers=auth())
            assert r.status_code < 500, (ctype, body, url, r.status_code)
    assert rows(engine) == seeded


@pytest.mark.parametrize(
    "name", ["ünïcødé", "名前", "emoji-😀", "a%2Fb", "new\nline", "tab\t", "x" * 10_000, "..", "."]
)
def test_unicode_and_odd_names(client, auth, engine, seeded, name: str) -> None:
    r = client.post(f"{API}/configs", json={"name": name, "config": {}}, headers=auth())
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "name"
    for url in (
        f"{API}/configs/{name}",
        f"{API}/configs/{name}/versions/1",
        f"{API}/configs/{name}/diff",
    ):
        assert client.get(url, headers=auth()).status_code in (404, 422)
    assert rows(engine) == seeded


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "none"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**70), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.0, -0.5, 1e-300, 1.7e308, rng.uniform(-10, 10)])
    if kind == "str":
        return rng.choice(["", "x", "名前", "\u0000", "a" * 300, "1e5", "true", "null"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [
        "name",
        "config",
        "message",
        "description",
        "parent_version",
        "model",
        "training",
        "generation",
        "learning_rate",
        "model_dim",
        "temperature",
        "x",
    ]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_fuzz_never_a_500(client, auth, engine, seeded) -> None:
    rng = random.Random(20261130)
    for i in range(150):
        body = _random_value(rng)
        if rng.random() < 0.6:
            body = {"name": f"fuzz-{i}", "config": _random_value(rng)}
        if rng.random() < 0.2:
            raw = json.dumps(body).encode()
            cut = rng.randint(0, len(raw))
            data = raw[:cut] + bytes([rng.randint(0, 255)]) + raw[cut:]
        else:
            data = json.dumps(body).encode()
        url = rng.choice(WRITES)
        r = client.post(url, data=data, content_type="application/json", headers=auth())
        assert r.status_code < 500, (url, data[:200], r.json)


@pytest.mark.parametrize(
    "url",
    [
        "/configs/tiny/versions/99999999999999999999",
        "/configs/tiny/versions/-1",
        "/configs/tiny/versions/0",
        "/configs/tiny/versions/1e3",
        "/configs/tiny/versions/%C2%B2",
        "/configs/tiny/versions/%00",
        "/configs/tiny%00/versions/1",
        "/configs/tiny%00",
        "/configs/tiny/diff?from=99999999999999999999&to=1",
        "/configs/tiny/diff?from=1&to=%00",
    ],
)
def test_odd_urls_are_a_4xx(client, auth, seeded, url: str) -> None:
    r = client.get(API + url, headers=auth())
    assert 400 <= r.status_code < 500, (url, r.json)


@pytest.mark.parametrize("bad", ["\u0000", "a\ud800b", "\udfff"])
def test_unstorable_characters_are_400(client, auth, engine, seeded, bad: str) -> None:
    bodies = [
        {"name": "n", "config": {}, "message": bad},
        {"name": "n", "config": {}, "description": bad},
        {"name": "n", "config": {"data": {"dataset": bad}}},
        {"name": "n", "config": {bad: 1}},
        {"name": "n", "config": json.dumps({"data": {"dataset": bad}})},  # as JSON text
    ]
    for body in bodies:
        data = json.dumps(body)  # ensure_ascii: NUL and surrogates travel as \\u escapes
        r = post(client, auth, f"{API}/configs", data)
        assert r.status_code in (400, 422), (body, r.json)
        v = post(client, auth, f"{API}/configs/tiny/versions", json.dumps({**body, "name": None}))
        assert 400 <= v.status_code < 500
    assert rows(engine) == seeded
