"""Fixtures shared by the test modules.

``chromium``: Debian's headless Chromium (``apt-get install chromium chromium-driver``; .ci/run installs
it), driven by selenium through the system chromedriver, for the tests that open the generated HTML
pages. Where it is missing, those tests skip and say so.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# True once every Plotly plot on the page has been laid out and drawn.
PLOTS_DRAWN_JS = """
const p = document.querySelectorAll('.js-plotly-plot');
return p.length > 0 && Array.from(p).every(g => g._fullLayout && g._fullData);
"""


@dataclass
class Browser:
    """One headless Chromium window (a selenium ``webdriver.Chrome``)."""

    driver: Any

    def open_plots(self, page: Path, screenshot: Path, script: str, timeout_s: float = 180) -> tuple[Any, list[dict]]:
        """Open ``page``, wait until every plot is drawn, run ``script`` (what to read from the plots) and
        save a full-page screenshot; the script's result and the browser's log (SEVERE: a JavaScript error)."""
        self.driver.get(page.resolve().as_uri())
        deadline = time.monotonic() + timeout_s
        while not self.driver.execute_script(PLOTS_DRAWN_JS):
            assert time.monotonic() < deadline, f"the plots were not drawn within {timeout_s:.0f} s"
            time.sleep(0.2)
        found = self.driver.execute_script(script)
        # The whole page in one image: the window as tall as the document, then a moment to re-lay it out.
        self.driver.set_window_size(1400, self.driver.execute_script("return document.body.scrollHeight"))
        time.sleep(0.5)
        self.driver.save_screenshot(str(screenshot))
        return found, self.driver.get_log("browser")


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """A headless Chromium for one test, closed after it; or skip, saying what is missing."""
    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # WebGL (Scattergl, parcoords) through SwiftShader: there is no GPU in CI
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
