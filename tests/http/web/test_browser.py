"""The web UI in a real headless Chromium against a real ``registry serve`` and worker."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.settings import Settings
from tests.support.procs import ROOT, Server, start_server, start_worker

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = ROOT / "test-output" / "screenshots"
XSS = "<script>alert(1)</script>"
RUN_TIMEOUT_MS = 300_000


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true needs Chromium: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
        "REGISTRY_INSECURE_COOKIES": "1",  # plain HTTP on 127.0.0.1
        "REGISTRY_SECRET_KEY": settings.secret_key or "",
        "MLFLOW_UI_URL": "http://127.0.0.1:5001",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def server(settings: Settings, tmp_path: Path, db_url: str) -> Iterator[Server]:
    """``registry serve`` on the test database (SQLite: one browser run is enough)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the browser tests run on SQLite")
    started = start_server(_env(settings), tmp_path / "logs" / "server.log")
    yield started
    started.proc.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh browser page; a JavaScript dialog (an executed alert) fails the test."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield tab
    context.close()
    assert dialogs == [], f"a script ran: {dialogs}"
    assert not [e for e in errors if "Content Security Policy" in e], errors


def shot(page: Any, name: str, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def sign_in(page: Any, token: str) -> None:
    page.goto("/configs")
    assert "/login" in page.url
    shot(page, "01-login")
    page.fill("#token", token)
    page.click("text=Sign in with token")
    page.wait_for_url(re.compile(r"/configs$"))


def test_config_to_finished_run(
    page: Any, server: Server, tokens: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """Sign in; a bad head count is flagged by its field; fix it; v1; v2 and its diff; queue a
    run, a real worker trains it, and the run page turns succeeded with a chart drawn."""
    from playwright.sync_api import expect

    sign_in(page, tokens["admin"])
    page.click("text=New config")
    page.fill("#f-name", "demo")
    page.fill("#f-model-model_dim", "1000")
    page.fill("#f-model-num_attention_heads", "12")
    heads_error = page.locator("#e-f-model-num_attention_heads")
    expect(heads_error).to_contain_text("not divisible")  # the live check, as one types
    page.click("#save")
    expect(page.locator("#error-summary")).to_be_visible()  # the server refused it
    expect(heads_error).to_contain_text("not divisible")
    shot(page, "02-form-error")
    # Fixed the way the message suggests; a small model_dim keeps the CPU training short.
    page.fill("#f-model-model_dim", "96")
    expect(heads_error).to_be_hidden()
    expect(page.locator('#estimate dd[data-key="parameters"]')).not_to_have_text("—")
    page.fill("#f-message", "first try")
    page.click("#save")
    expect(page.locator("#saved")).to_contain_text("Saved version 1")
    shot(page, "03-config-v1")

    page.click("text=New version from v1")
    page.fill("#f-training-learning_rate", "0.002")
    page.fill("#f-message", "a faster rate")
    page.click("#save")
    expect(page.locator("#saved")).to_contain_text("Saved version 2")
    rows = page.locator("#diff-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("training.learning_rate")
    shot(page, "04-config-diff")
    page.click("#show-all")
    assert page.locator("#diff-table tbody tr").count() > 20
    page.go_back()

    page.select_option("#q-kind", "train")
    page.click("text=Queue run")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    expect(page.locator("#run-status")).to_contain_text("queued")
    worker = start_worker(
        {"REGISTRY_URL": server.url, "REGISTRY_TOKEN": tokens["worker"], **_env(settings)},
        tmp_path / "logs" / "worker.log",
        "--name",
        "browser-w",
        "--poll-max",
        "1",
        "--once",
        state_dir=tmp_path / "state",
    )
    try:
        # The page refreshes itself while the run is queued or running.
        finished = re.compile("succeeded|failed|cancelled")
        expect(page.locator("#run-status")).to_contain_text(finished, timeout=RUN_TIMEOUT_MS)
        expect(page.locator("#run-status")).to_contain_text("succeeded", timeout=1)
    except AssertionError:
        print(worker.output(), server.proc.output())
        raise
    finally:
        worker.stop()
    expect(page.locator("#loss-chart polyline").first).to_be_visible()
    assert page.locator("#loss-chart polyline").count() == 2  # train and validation loss
    expect(page.locator("#metrics")).to_contain_text("val_loss")
    shot(page, "05-run-succeeded")


def test_filter_csrf_and_escaping(page: Any, server: Server, tokens: dict[str, str]) -> None:
    """The filter box with its parse error; a post without a CSRF token; script as text."""
    from playwright.sync_api import expect

    sign_in(page, tokens["admin"])
    # A config name is limited to [A-Za-z0-9._-]: the refusal shows the name as text...
    page.click("text=New config")
    page.fill("#f-name", XSS)
    page.fill("#f-description", XSS)
    page.fill("#f-message", XSS)
    page.click("#save")
    expect(page.locator("#e-name")).to_be_visible()
    assert page.locator("#f-name").input_value() == XSS
    # ...so the description and the version message carry the script instead.
    page.fill("#f-name", "xss")
    page.click("#save")
    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator(".lead")).to_have_text(XSS)
    expect(page.locator(".timeline .message").first).to_have_text(XSS)
    page.goto("/configs")
    expect(page.locator("td, th").filter(has_text=XSS).first).to_be_visible()
    shot(page, "06-configs")

    page.goto("/runs")
    page.fill("#filter", "status == 'queued'")
    page.click("text=Apply")
    expect(page.locator("#filter-error")).to_contain_text("at position 8")
    shot(page, "07-runs-filter-error")
    page.fill("#filter", "config = 'xss' AND status = 'queued'")
    page.click("text=Apply")
    expect(page.locator("#filter-error")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("No runs match")

    answer = page.request.post(
        f"{server.url}/configs/-/new", form={"name": "forged", "action": "save"}
    )
    assert answer.status == 400 and "CSRF" in answer.text()
    page.goto("/configs")
    assert "forged" not in page.content()

    page.goto("/workers")
    shot(page, "08-workers")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/configs/xss")
    shot(page, "09-phone-config")


def test_architecture_details_show_what_empty_fields_derive(
    page: Any, server: Server, tokens: dict[str, str]
) -> None:
    """An empty MLA/MoE/GQA field shows its derived value, and follows the model section."""
    from playwright.sync_api import expect

    sign_in(page, tokens["admin"])
    page.goto("/configs/-/new?from=preset:tiny-cpu")
    rank, rank_hint = (
        page.locator("#f-model-mla-kv_lora_rank"),
        page.locator("#d-f-model-mla-kv_lora_rank"),
    )
    expect(rank_hint).to_contain_text("32")  # 4 x head_dim (64 / 8)
    page.fill("#f-model-model_dim", "128")
    expect(rank_hint).to_contain_text("64")  # the live check recomputed it
    expect(rank).to_have_attribute("placeholder", "64")
    page.fill("#f-model-mla-kv_lora_rank", "48")
    expect(rank_hint).to_be_hidden()  # given, so nothing is derived
    page.select_option("#f-model-architecture", "llama")
    experts = page.locator("#d-f-model-moe-n_routed_experts")
    expect(experts).to_contain_text("deepseek_v2 only")
    expect(page.locator("#summary")).to_contain_text("model.mla")  # kv_lora_rank on a llama
    shot(page, "10-architecture-details")


def test_dataset_picker_follows_the_task(page: Any, server: Server, tokens: dict[str, str]) -> None:
    """The data.dataset <datalist> enables the built-ins of the task chosen (app.js)."""
    sign_in(page, tokens["admin"])
    page.goto("/configs/-/new")
    enabled = "#l-f-data-dataset option:not([disabled])"

    def offered() -> list[str]:
        return page.eval_on_selector_all(enabled, "els => els.map(e => e.value)")

    assert offered() == ["builtin:pydoc", "builtin:licenses"]
    page.select_option("#f-task", "multimodal_matching")
    assert offered() == ["builtin:shapes"]
    page.fill("#f-data-dataset", "builtin:pydoc")
    from playwright.sync_api import expect

    expect(page.locator("#e-f-data-dataset")).to_contain_text("use builtin:shapes")
    page.select_option("#f-task", "classification")
    assert offered() == ["builtin:stdlib-docs"]
