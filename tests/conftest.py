"""Fixtures shared by the test modules.

``chromium``: Debian's headless Chromium through selenium (``nasseg.viz.browser``), for the tests that
open the generated HTML pages. Where it is missing, those tests skip and say so.
``tinyseg``: a test-only two-layer family and its space, registered for one test (``latency_fixtures``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from latency_fixtures import tinyseg  # noqa: F401 (a fixture: defining it here makes it every test's)

from nasseg.errors import ConfigError
from nasseg.viz.browser import Browser, headless_chromium


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """A headless Chromium for one test, closed after it; or skip, saying what is missing."""
    with ExitStack() as stack:
        try:
            browser = stack.enter_context(headless_chromium())
        except ConfigError as missing:  # only a missing browser skips: an error in the test itself fails it
            pytest.skip(str(missing))
        yield browser
