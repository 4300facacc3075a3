"""Screenshot the top of a run's ``report.html`` in headless Chromium: the image the README and docs show.

Usage (needs Debian's ``chromium`` and the ``playwright`` package of the dev extras):
    .venv/bin/python tools/screenshot_report.py runs/demo docs/images/report_screenshot.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Debian's Chromium, started without the background services that a closed network refuses (also the
#: settings of tests/integration/test_report_browser.py).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def screenshot(run_dir: Path, out: Path, width: int = 1280, height: int = 900) -> None:
    """Write a ``width`` x ``height`` PNG of the top of ``run_dir/report.html`` to ``out``."""
    from playwright.sync_api import sync_playwright

    report = run_dir / "report.html"
    if not report.is_file():
        raise SystemExit(f"run_dir={str(run_dir)!r}: no report.html (run `imde report {run_dir}` first)")
    if not CHROMIUM.is_file():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.resolve().as_uri(), wait_until="load")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()
    print(f"written {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished study's run directory")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    screenshot(args.run_dir, args.out)


if __name__ == "__main__":
    main()
