"""The HTML report reads on a phone and a desktop: nothing overflows at 390 or 1280 px, the
legend keeps its colours, the interval labels do not overlap, one bucket still draws, and
there is no holdout bar without a holdout."""

from __future__ import annotations

import os

import pytest

from campaigns.reports.html import lift_svg, timeline_svg

CHROMIUM = "/usr/bin/chromium"


def test_a_timeline_of_one_bucket_draws_markers_a_bar_and_axes() -> None:
    svg = timeline_svg([{"at": "2026-11-02 09:00", "opens": 5, "clicks": 2, "orders": 1}])
    assert svg.count('class="point"') == 2 and 'class="bar"' in svg and svg.count('class="axis"') == 2
    assert 'cx="320.0"' in svg  # in the middle, not on the axis
    assert "responses per bucket" in svg and ">5<" in svg  # the y axis says what it counts and its top


def test_no_holdout_no_holdout_bar() -> None:
    lift = {"treated": {"rate": 0.1, "contacts": 100}, "holdout": {"rate": None, "contacts": 0}, "absolute": None,
            "ci95": None}
    svg = lift_svg(lift)
    assert svg.count('class="bar"') == 1 and ">holdout<" not in svg and ">0.0%<" not in svg


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
def test_the_pages_fit_a_phone_and_a_desktop(cli, history, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    pages = {"campaign": tmp_path / "c.html", "loyalty": tmp_path / "l.html"}
    assert cli("report", history, "--html", "-o", str(pages["campaign"])).exit_code == 0
    assert cli("report", "loyalty", "--html", "-o", str(pages["loyalty"])).exit_code == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        for name, path in pages.items():
            for width in (390, 1280):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(path.as_uri())
                assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
                svg_right = page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().right)")
                assert all(r <= width for r in svg_right), (name, width, svg_right)
                if name == "campaign":
                    fills = page.eval_on_selector_all("svg[aria-label=timeline] text[fill]",
                                                      "els => els.map(e => getComputedStyle(e).fill)")
                    assert fills == ["rgb(38, 128, 194)", "rgb(62, 189, 147)", "rgb(230, 106, 106)"], fills
                    boxes = page.eval_on_selector_all(
                        "svg[aria-label=lift] text", "els => els.map(e => { const b = e.getBoundingClientRect();"
                        " return [e.textContent, b.left, b.right, b.top, b.bottom]; })")
                    for i, a in enumerate(boxes):
                        for b in boxes[i + 1:]:
                            overlap = a[1] < b[2] and b[1] < a[2] and a[3] < b[4] and b[3] < a[4]
                            assert not overlap, (width, a, b)
                page.close()
        browser.close()
