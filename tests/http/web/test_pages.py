"""Every page through the Flask test client: auth, CSRF, headers, escaping, forms."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.document import presets
from registry.http.app import create_app
from registry.services import configs, queue, workers
from registry.services.users import create_user
from registry.settings import Settings
from tests.support.web import csrf_of, form_data

TINY = presets.get_preset("tiny-cpu").document
XSS = "<script>alert(1)</script>"


def _text(answer: Any) -> str:
    return str(answer.get_data(as_text=True))


def _field_error(html: str, path: str) -> str:
    match = re.search(
        rf'<p class="error" id="e-f-{re.escape(path.replace(".", "-"))}">([^<]*)</p>', html
    )
    return match.group(1) if match else ""


# -- security -------------------------------------------------------------------------------


def test_security_headers_on_pages_api_and_static(web: FlaskClient) -> None:
    for url in ("/login", "/configs", "/api/v1/health", "/static/app.css"):
        headers = web.get(url).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_pages_hold_no_inline_script_or_style(web: FlaskClient, stored: Any) -> None:
    stored("tiny")
    for url in ("/login", "/configs", "/configs/-/new", "/configs/tiny", "/runs", "/workers"):
        html = _text(web.get(url))
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert "<style" not in html and " style=" not in html, url
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handlers


def test_signed_out_pages_redirect_to_login(client: FlaskClient) -> None:
    answer = client.get("/runs?filter=x")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=/runs")


def test_post_without_csrf_token_is_refused(web: FlaskClient, auth: Any) -> None:
    answer = web.post("/configs/-/new", data={"action": "save", "name": "x"})
    assert answer.status_code == 400
    assert "CSRF" in _text(answer)
    # The bearer-token API is exempt: no cookie authority to forge.
    api = web.post("/api/v1/validate", json={"config": {}}, headers=auth("viewer"))
    assert api.status_code == 200


def test_login_refuses_bad_and_worker_tokens(client: FlaskClient, tokens: dict[str, str]) -> None:
    for token, message in (("cr_nope", "unknown"), (tokens["worker"], "cannot sign in")):
        page = _text(client.get("/login"))
        answer = client.post("/login", data={"token": token, "csrf_token": csrf_of(page)})
        assert answer.status_code == 401 and message in _text(answer)
    assert client.get("/configs").status_code == 302


def test_login_with_password_and_logout(client: FlaskClient, engine: Engine) -> None:
    with transaction(make_session_factory(engine)) as s:
        create_user(s, "ada", "viewer", "correct horse")
    token = csrf_of(_text(client.get("/login")))
    bad = client.post(
        "/login",
        data={"method": "password", "name": "ada", "password": "wrong pass", "csrf_token": token},
    )
    assert bad.status_code == 401
    good = client.post(
        "/login?next=/runs",
        data={
            "method": "password",
            "name": "ada",
            "password": "correct horse",
            "next": "/runs",
            "csrf_token": token,
        },
    )
    assert good.status_code == 303 and good.headers["Location"] == "/runs"
    page = _text(client.get("/configs"))
    assert "ada" in page and "New config" not in page  # a viewer may not write
    assert client.get("/configs/-/new").status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert out.status_code == 303
    assert client.get("/configs").status_code == 302


def test_login_ignores_offsite_next(client: FlaskClient, tokens: dict[str, str]) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        token = csrf_of(_text(client.get("/login")))  # signing in starts a new session
        answer = client.post(
            "/login", data={"token": tokens["admin"], "next": target, "csrf_token": token}
        )
        assert answer.headers["Location"] == "/configs"


def test_session_cookie_is_secure_httponly_lax(
    settings: Settings, engine: Engine, tokens: dict[str, str]
) -> None:
    app = create_app(settings.with_(secure_cookies=True), engine=engine)
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost")
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


# -- configs --------------------------------------------------------------------------------


def test_form_shows_sections_and_guide_help(web: FlaskClient) -> None:
    html = _text(web.get("/configs/-/new?from=preset:lightweight-classification"))
    for legend in ("Model", "Training", "Generation", "Multimodal", "Data", "Resources"):
        assert f"<legend>{legend}</legend>" in html
    assert 'for="f-model-num_attention_heads"' in html
    assert "Recommended: 8-32." in html
    assert 'value="768"' in html  # the preset's model_dim


def test_bad_head_count_is_shown_by_its_field_then_fixed(web: FlaskClient, post_form: Any) -> None:
    data = form_data(TINY) | {
        "model.model_dim": "1000",
        "model.num_attention_heads": "12",
        "name": "heads",
        "message": "try 1000",
        "action": "save",
    }
    answer = post_form("/configs/-/new", "/configs/-/new", data)
    assert answer.status_code == 422
    assert "not divisible" in _field_error(_text(answer), "model.num_attention_heads")
    assert 'value="1000"' in _text(answer)  # what was typed is kept
    data["model.num_attention_heads"] = "8"
    saved = post_form("/configs/-/new", "/configs/-/new", data)
    assert saved.status_code == 303
    page = _text(web.get(saved.headers["Location"]))
    assert "Saved version 1" in page and "try 1000" in page


def test_check_shows_estimate_without_saving(web: FlaskClient, post_form: Any) -> None:
    data = form_data(TINY) | {"name": "checked", "action": "check"}
    answer = post_form("/configs/-/new", "/configs/-/new", data)
    assert answer.status_code == 200
    assert 'data-key="parameters">177,664<' in _text(answer)
    assert configs_names(web) == []


def configs_names(web: FlaskClient) -> list[str]:
    return re.findall(r'<a href="/configs/([^"/]+)">', _text(web.get("/configs")))


def test_warnings_do_not_block_and_unreadable_numbers_are_errors(
    web: FlaskClient, post_form: Any
) -> None:
    data = form_data(TINY) | {"training.learning_rate": "abc", "name": "w", "action": "save"}
    answer = post_form("/configs/-/new", "/configs/-/new", data)
    assert answer.status_code == 422
    assert "is not a number" in _field_error(_text(answer), "training.learning_rate")
    data["training.learning_rate"] = "0.001"
    assert post_form("/configs/-/new", "/configs/-/new", data).status_code == 303
    page = _text(web.get("/configs/w"))
    assert "outside the guide" in page  # the stored warning is shown


def test_live_check_endpoint(web: FlaskClient, post_form: Any) -> None:
    data = form_data(TINY) | {"model.model_dim": "1000", "model.num_attention_heads": "12"}
    result = post_form("/configs/-/new", "/configs/-/check", data).get_json()
    assert not result["valid"]
    assert "model.num_attention_heads" in result["field_errors"]
    data["model.num_attention_heads"] = "8"
    result = post_form("/configs/-/new", "/configs/-/check", data).get_json()
    assert result["valid"] and result["estimate"]["parameters"] > 0


def test_yaml_paste_and_upload(web: FlaskClient, post_form: Any) -> None:
    yaml_text = "model:\n  model_dim: 128\n  num_attention_heads: 8\n"
    data = {"name": "pasted", "yaml": yaml_text, "action": "save"}
    assert post_form("/configs/-/new", "/configs/-/new", data).status_code == 303
    bad = post_form(
        "/configs/-/new", "/configs/-/new", {"name": "bad", "yaml": "model: [1,", "action": "save"}
    )
    assert bad.status_code == 422 and "malformed YAML" in _text(bad)
    import io

    upload = {
        "name": "uploaded",
        "action": "save",
        "yaml_file": (io.BytesIO(yaml_text.encode()), "c.yaml"),
    }
    answer = post_form(
        "/configs/-/new", "/configs/-/new", upload, content_type="multipart/form-data"
    )
    assert answer.status_code == 303


def test_user_text_is_escaped(web: FlaskClient, post_form: Any) -> None:
    # Config names are limited to [A-Za-z0-9._-] by the service, so the name is refused (and
    # the refusal shows it as text); description and message carry the payload instead.
    data = form_data(TINY) | {"name": XSS, "action": "save"}
    refused = post_form("/configs/-/new", "/configs/-/new", data)
    assert refused.status_code == 422 and XSS not in _text(refused)
    data |= {"name": "safe", "description": XSS, "message": XSS}
    assert post_form("/configs/-/new", "/configs/-/new", data).status_code == 303
    for url in ("/configs", "/configs/safe"):
        html = _text(web.get(url))
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_detail_timeline_yaml_and_diff(web: FlaskClient, post_form: Any, stored: Any) -> None:
    stored("tiny")
    data = form_data(TINY) | {
        "training.learning_rate": "0.002",
        "message": "faster",
        "action": "save",
    }
    answer = post_form("/configs/tiny/new", "/configs/tiny/new", data)
    assert answer.status_code == 303 and "v=2" in answer.headers["Location"]
    html = _text(web.get("/configs/tiny"))
    assert "faster" in html and "first" in html
    changed = re.findall(r'<tr class="changed"><th scope="row"><code>([^<]+)</code>', html)
    assert changed == ["training.learning_rate"]
    assert '<tr class="same">' not in html
    full = _text(web.get("/configs/tiny?from=1&to=2&all=1"))
    assert full.count('<tr class="same">') > 20
    download = web.get("/configs/tiny/versions/2.yaml")
    assert "attachment" in download.headers["Content-Disposition"]
    assert "learning_rate: 0.002" in _text(download)
    again = post_form("/configs/tiny/new", "/configs/tiny/new", data)
    assert "already stored as version 2" in _text(web.get(again.headers["Location"]))


# -- runs -----------------------------------------------------------------------------------


def test_queue_cancel_and_reproduce(web: FlaskClient, post_form: Any, stored: Any) -> None:
    stored("tiny")
    answer = post_form(
        "/configs/tiny",
        "/configs/tiny/runs",
        {"version": "1", "kind": "train", "queue": "default", "priority": "3"},
    )
    assert answer.status_code == 303
    page = _text(web.get(answer.headers["Location"]))
    assert "status-queued" in page and 'http-equiv="refresh"' in page
    run_url = answer.headers["Location"]
    cancelled = post_form(run_url, run_url + "/cancel", {})
    assert "status-cancelled" in _text(web.get(cancelled.headers["Location"]))
    copy = post_form(run_url, run_url + "/reproduce", {})
    assert "Reproduces" in _text(web.get(copy.headers["Location"]))
    refused = post_form("/configs/tiny", "/configs/tiny/runs", {"kind": "evaluate"})
    assert refused.status_code == 400 and "succeeded train run" in _text(refused)


def test_runs_filter_sort_and_pages(web: FlaskClient, stored: Any) -> None:
    stored("tiny", runs=55)
    page = _text(web.get("/runs"))
    assert page.count('class="badge status-queued"') == 50
    assert 'id="next-page"' in page
    cursor = re.search(r'cursor=([^"&]+)', page)
    assert cursor
    rest = _text(web.get(f"/runs?order=id+DESC&cursor={cursor.group(1)}"))
    assert rest.count('class="badge status-queued"') == 5
    asc = _text(web.get("/runs?order=id+ASC"))
    ids = [int(i) for i in re.findall(r'<th scope="row"><a href="/runs/(\d+)"', asc)]
    assert ids == sorted(ids)
    matched = _text(web.get("/runs?filter=status+%3D+%27queued%27+AND+config+%3D+%27tiny%27"))
    assert matched.count('class="badge status-queued"') == 50
    none = _text(web.get("/runs?filter=status+%3D+%27failed%27"))
    assert "No runs match" in none


def test_runs_filter_error_shows_position(web: FlaskClient) -> None:
    answer = web.get("/runs?filter=status+%3D%3D+1")
    assert answer.status_code == 400
    html = _text(answer)
    assert 'id="filter-error"' in html and "position" in html
    assert re.search(r"\n\s*\^</code>", html)


def test_run_detail_metrics_deltas_and_compare(web: FlaskClient, engine: Engine) -> None:
    with transaction(make_session_factory(engine)) as s:
        version = configs.create_config(s, "c", TINY).version
        first = queue.enqueue(s, version, "train")
        copy = queue.enqueue(s, version, "train", reproduces=first.id)
        first.status, copy.status = "succeeded", "succeeded"
        first.metrics, copy.metrics = (
            {"val_loss": 2.5, "train_loss": 2.0},
            {"val_loss": 2.25, "train_loss": 2.0},
        )
        first.error = {"kind": "out_of_memory", "message": XSS, "remedies": ["use less"]}
        ids = (first.id, copy.id)
    html = _text(web.get(f"/runs/{ids[1]}"))
    assert "Against the original" in html and "-0.25" in html
    html = _text(web.get(f"/runs/{ids[0]}"))
    assert "use less" in html and XSS not in html
    compare = web.get(f"/compare?run={ids[0]}&run={ids[1]}")
    assert compare.status_code == 200 and "share one config document" in _text(compare)
    assert web.get(f"/compare?run={ids[0]}").status_code == 400


def test_run_detail_says_a_rerun_on_another_gpu_is_within_tolerance_not_identical(
    web: FlaskClient, engine: Engine
) -> None:
    from registry.services.reproduction import compare

    h200 = {"device": "cuda:0 NVIDIA H200", "gpu_name": "NVIDIA H200", "torch": "2.13.0"}
    a100 = h200 | {"device": "cuda:0 NVIDIA A100", "gpu_name": "NVIDIA A100"}
    with transaction(make_session_factory(engine)) as s:
        version = configs.create_config(s, "c", TINY).version
        first = queue.enqueue(s, version, "train")
        copy = queue.enqueue(s, version, "train", reproduces=first.id)
        copy.reproduction = compare({"val_loss": 2.5}, {"val_loss": 2.501}, h200, a100)
        copy.identical = copy.reproduction["identical"]
        copy_id = copy.id
    html = _text(web.get(f"/runs/{copy_id}"))
    assert "another environment (gpu_name): within the tolerance (1%)" in html


def test_workers_page_warns_about_unserved_queue(
    web: FlaskClient, stored: Any, engine: Engine
) -> None:
    stored("tiny", runs=2)
    with transaction(make_session_factory(engine)) as s:
        workers.register_worker(
            s,
            "w1",
            queue.db_now(s),
            host="gpu-1",
            devices={"kind": "cuda", "names": ["H200"]},
            queues=["other"],
        )
    html = _text(web.get("/workers"))
    assert "Queue <strong>default</strong> holds 2 queued runs" in html
    assert "gpu-1" in html and "H200" in html


def test_unknown_pages_are_html_404(web: FlaskClient) -> None:
    for url in ("/configs/nope", "/runs/999999"):
        answer = web.get(url)
        assert answer.status_code == 404 and "<h1>404</h1>" in _text(answer)


def test_app_without_testing_flag(app: Flask) -> None:
    assert "registry.http.web" in app.extensions
