"""Headless Chromium, driven by selenium: nasseg's HTML pages drawn as a browser draws them.

The tests open the dashboard and landscape pages with it, and ``docs/figures.py`` takes the README's
picture of a real dashboard with it. It needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them) and selenium (the ``dev`` extra); without them, ``headless_chromium`` says what is missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasseg.errors import ConfigError

# True once every Plotly plot on the page has been laid out and drawn.
PLOTS_DRAWN_JS = """
const p = document.querySelectorAll('.js-plotly-plot');
return p.length > 0 && Array.from(p).every(g => g._fullLayout && g._fullData);
"""


@dataclass
class Browser:
    """One headless Chromium window (a selenium ``webdriver.Chrome``)."""

    driver: Any

    def open_plots(
        self, page: Path, screenshot: Path, script: str = "return null", timeout_s: float = 180, full_page: bool = True
    ) -> tuple[Any, list[dict]]:
        """Open ``page``, wait until every plot is drawn, run ``script`` (what to read from the plots) and
        save a screenshot (the whole page, or the window); the script's result and the browser's log
        (SEVERE: a JavaScript error)."""
        self.driver.get(page.resolve().as_uri())
        deadline = time.monotonic() + timeout_s
        while not self.driver.execute_script(PLOTS_DRAWN_JS):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the plots of {page} were not drawn within {timeout_s:.0f} s")
            time.sleep(0.2)
        found = self.driver.execute_script(script)
        if full_page:  # the window as tall as the document, then a moment to lay it out again
            self.driver.set_window_size(1400, self.driver.execute_script("return document.body.scrollHeight"))
            time.sleep(0.5)
        self.driver.save_screenshot(str(screenshot))
        return found, self.driver.get_log("browser")


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Browser]:
    """A headless Chromium window, closed afterwards; ``ConfigError`` naming what is missing."""
    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver_path):
        raise ConfigError("headless Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise ConfigError("selenium is not installed: pip install -e '.[dev]'") from None
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # WebGL (Scattergl, parcoords) through SwiftShader: there is no GPU in CI
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",
        "--use-angle=swiftshader",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
