"""The HTML report in real headless Chromium: charts drawn, no network request, no console error."""

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_html_report_renders_its_charts_offline(cli, history, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    r = cli("report", history, "--html", "-o", str(out))
    assert r.exit_code == 0, r.output
    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda req: requests.append(req.url))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(out.as_uri())
        sizes = page.eval_on_selector_all(
            "svg", "els => els.map(e => [e.getAttribute('aria-label'), e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
        bars = page.eval_on_selector_all("svg[aria-label=funnel] rect.bar", "els => els.map(e => e.getBoundingClientRect().width)")
        ci = page.eval_on_selector_all("svg[aria-label=lift] line.ci", "els => els.length")
        series = page.eval_on_selector_all("svg[aria-label=timeline] polyline.series", "els => els.length")
        verdict = page.inner_text(".verdict")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert requests == [out.as_uri()]  # the page itself, nothing else
    assert errors == []
    assert {label for label, w, h in sizes if w > 0 and h > 0} == {"funnel", "lift", "timeline"}
    assert len(bars) == 7 and all(w > 0 for w in bars) and bars[0] == max(bars)
    assert ci == 1 and series == 2 and verdict == "too small to tell"  # 15/112 vs 2/40: the interval spans 0
    assert Path(tmp_path / "report.png").stat().st_size > 10_000
    keep = os.environ.get("CAMPAIGNS_TEST_SCREENSHOT")
    if keep:
        Path(keep).write_bytes((tmp_path / "report.png").read_bytes())
