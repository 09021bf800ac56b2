"""The README's picture: the dashboard of the committed CamVid study, as headless Chromium draws it.

    python docs/figures.py        # writes docs/img/espnet-nano-dashboard.png from studies/espnet-nano

It runs ``nasseg dashboard`` on the committed study and photographs the top of the page (the Pareto plot
and the plots beside it). Needs headless Chromium (see ``nasseg.viz.browser``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from nasseg.search.results import study_results
from nasseg.search.study import open_study
from nasseg.viz.browser import headless_chromium
from nasseg.viz.dashboard import write_dashboard

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "img" / "espnet-nano-dashboard.png"


def main() -> None:
    study, settings = open_study(str(ROOT / "studies" / "espnet-nano.yaml"))
    results = study_results(study, settings)
    with tempfile.TemporaryDirectory() as folder:
        page = write_dashboard(Path(folder) / "dashboard.html", [results], [study])
        with headless_chromium(width=1400, height=1250) as browser:
            _, log = browser.open_plots(page, PICTURE, full_page=False)
    errors = [entry for entry in log if entry.get("level") == "SEVERE"]
    if errors:
        sys.exit(f"the page logged JavaScript errors: {errors}")
    print(f"{PICTURE.relative_to(ROOT)}: {len(results.trials)} trials of study {results.study}")


if __name__ == "__main__":
    main()
