"""report.html in a real headless Chromium (Playwright): no console error, no network request, every image
loads, the unit browser switches units, and a hostile layer name stays text.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package; the
test is skipped with the reason when either is missing. Marked ``browser``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "paper"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from screenshot_report import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (one set of launch settings for both)
from test_report_fakerun import make_fake_run  # noqa: E402

from imde.paper.report import build_report  # noqa: E402

pytestmark = pytest.mark.browser

EVIL_LAYER = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(make_fake_run(tmp_path_factory.mktemp("browser") / "demo"))


class Page:
    """A loaded page with every console message, page error, dialog and request recorded."""

    def __init__(self, browser: object, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri(), wait_until="load")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)


@pytest.fixture
def page(browser: object, report: Path) -> Iterator[Page]:
    loaded = Page(browser, report)
    yield loaded
    loaded.page.close()


def test_page_loads_without_errors_or_network(page: Page) -> None:
    assert page.errors == []
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
    images = page.page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) == 6
    assert all(complete and width > 0 for _, complete, width in images), images
    # sprite tiles: CSS backgrounds from embedded PNGs, which decode (naturalWidth > 0) in this browser
    widths = page.page.evaluate("""async () => {
        const urls = [...new Set(Array.from(document.querySelectorAll('.tile'))
            .map(t => getComputedStyle(t).backgroundImage.slice(5, -2)))];
        return Promise.all(urls.map(u => new Promise(ok => {
            const im = new Image(); im.onload = () => ok(im.naturalWidth); im.onerror = () => ok(0); im.src = u; })));
    }""")
    assert len(widths) >= 4 and all(w > 0 for w in widths), widths
    assert page.page.locator("#ds-hist svg path.hist").count() == 6  # 2 layers x 3 models
    assert page.page.locator("#ablation-charts svg polyline").count() == 4  # 2 models x 2 orders
    titles = page.page.locator("#ablation-charts h4").all_inner_texts()
    assert [t.endswith("(units of D & MFF)") for t in titles] == [True, False]  # the assign entry names no layers


def test_unit_browser_switches_units(page: Page, report: Path) -> None:
    data = json.loads(page.page.inner_text("#imde-data"))
    ds = data["dissect"]["assign"]["test"]["D"]["units"]["selectivity"]
    assert page.page.input_value("#ub-model") == "assign"
    assert page.text("#ub-title") == "Interpretable (L_assign) · D · unit 0"
    assert page.text("#ub-ds") == f"{ds[0]:.4f}"
    curve0 = page.page.get_attribute("#ub-curve polyline.tuning", "points")

    page.page.click("#ub-next")
    assert page.page.input_value("#ub-unit") == "1"
    assert page.text("#ub-ds") == f"{ds[1]:.4f}"
    assert page.page.get_attribute("#ub-curve polyline.tuning", "points") != curve0
    assert page.page.locator("#ub-curve rect.assigned-band").count() == 1

    page.page.click('#ub-grid .cell[data-unit="12"]')
    assert page.text("#ub-title").endswith("unit 12") and page.text("#ub-ds") == f"{ds[12]:.4f}"
    assert page.page.locator("#ub-grid .cell.selected").get_attribute("data-unit") == "12"
    position = page.page.locator("#ub-maps .tile").last.evaluate("t => getComputedStyle(t).backgroundPosition")
    assert position.split()[1] == f"{12 / 15 * 100:g}%"  # row 12 of 16 units in the layer sprite

    page.page.select_option("#ub-model", "baseline")
    base = data["dissect"]["baseline"]["test"]["D"]["units"]["selectivity"]
    assert page.text("#ub-title") == "Baseline · D · unit 12" and page.text("#ub-ds") == f"{base[12]:.4f}"
    page.page.select_option("#ub-layer", "MFF")
    assert page.text("#ub-title") == "Baseline · MFF · unit 12"
    page.page.select_option("#ub-model", "reg")  # no atlas for reg: said so in the page, no error
    assert "No feature maps" in page.text("#ub-maps")

    grids = page.page.locator("#dissect-grids .grid")  # Fig. 3/4: one grid per layer and model
    assert grids.count() == 6 and grids.nth(0).locator(".cell").count() == 16
    grids.nth(4).locator('.cell[data-unit="3"]').click()  # layer MFF, interpretable model
    assert page.text("#ub-title") == "Interpretable (L_assign) · MFF · unit 3"
    mff = data["dissect"]["assign"]["test"]["MFF"]["units"]["selectivity"]
    assert page.text("#ub-ds") == f"{mff[3]:.4f}" and page.page.input_value("#ub-layer") == "MFF"
    assert page.errors == []


def test_hostile_layer_name_stays_text(browser: object, tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "evil", atlas=False, figures=False, layer_names=(EVIL_LAYER, "D"))
    loaded = Page(browser, build_report(run))
    try:
        assert EVIL_LAYER in loaded.page.evaluate("Array.from(document.querySelectorAll('#ub-layer option'))"
                                                  ".map(o => o.textContent)")
        loaded.page.select_option("#ub-layer", EVIL_LAYER)
        assert loaded.text("#ub-title").endswith(f"{EVIL_LAYER} · unit 0")
        assert loaded.page.locator("img[src=x]").count() == 0
        assert loaded.dialogs == [] and loaded.errors == []
    finally:
        loaded.page.close()
