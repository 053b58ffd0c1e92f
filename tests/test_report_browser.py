"""The pages a person opens, in a real headless Chromium: they render, images load, no network."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from verify.report.run_report import render_index

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# flags this machine needs: no sandbox as root, and no background calls to Google's hosts
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail("chromium is missing: .ci/run installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_page(browser, url: str, shot: Path) -> tuple[dict, list[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
    state = {"title": page.title(), "images": images, "text": page.inner_text("body")}
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return state, [u for u in requests if not u.startswith(("file:", "data:"))]


@pytest.mark.parametrize("name", ["retinaface", "arcface-mobilefacenet"])
def test_report_renders_offline(name: str, browser, fresh_run, tmp_path: Path) -> None:
    run_dir = fresh_run(name)
    state, network = open_page(browser, (run_dir / "report.html").as_uri(), run_dir / "screenshot.png")
    assert network == [], f"report asked the network for {network}"
    assert state["title"].startswith(f"rkverify: {name}")
    assert state["images"] and all(done and width > 0 for done, width in state["images"]), state["images"]
    assert "Gates" in state["text"] and ("PASS" in state["text"] or "FAIL" in state["text"])
    assert (run_dir / "screenshot.png").stat().st_size > 20_000


def test_index_links_to_reports(browser, fresh_run, tmp_path: Path) -> None:
    run_dir = fresh_run("retinaface")
    reports = run_dir.parent.parent
    index = render_index(reports)
    state, network = open_page(browser, index.as_uri(), tmp_path / "index.png")
    assert network == []
    assert "retinaface" in state["text"] and run_dir.name in state["text"]
