"""Screenshots of the FiftyOne App on a run, for the README (``make screenshot``): the "to review" queue after a
reviewer decided its first 6 suspects, the
"crust embeddings" workspace (the samples by score beside the Embeddings panel's map, coloured by crust_score), and
the saved view "near-duplicates" (the groups one after another).

Exports RUN (default: the demo's run, ``make demo``) into a temporary FiftyOne dataset, serves the App on
localhost and drives headless Chromium with Selenium (Debian packages ``chromium`` and ``chromium-driver``; the
``docs`` extra): FiftyOne's "Explore Enterprise" pop-over is dismissed as a user would, then the map is opened
and coloured, clicks a reader can repeat.
Usage: ``python scripts/screenshot.py [RUN] [--out docs/fiftyone-suspects.png]
[--embeddings-out docs/fiftyone-embeddings.png] [--duplicates-out docs/fiftyone-near-duplicates.png]``.
"""

import argparse
import os
import shutil
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser():
    """Headless Chromium through the Debian chromedriver (Selenium Manager never downloads one), 1400 x 900."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    return driver


def click_text(driver, text: str, *, within=None, seconds: int = 60) -> None:
    """Click the last visible element whose text is ``text`` (inside ``within`` when given), once it shows."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [e for e in (within or driver).find_elements(By.XPATH, f".//*[normalize-space(text())='{text}']")
                 if e.is_displayed()]
        if found:
            found[-1].click()
            return
        time.sleep(0.5)
    raise SystemExit(f"screenshot: the App never showed {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "demo" / "run"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "fiftyone-suspects.png")
    parser.add_argument("--embeddings-out", type=Path, default=ROOT / "docs" / "fiftyone-embeddings.png")
    parser.add_argument("--duplicates-out", type=Path, default=ROOT / "docs" / "fiftyone-near-duplicates.png")
    parser.add_argument("--seconds", type=int, default=10, help="time the App gets to render each picture")
    args = parser.parse_args()
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        sys.exit("screenshot: needs headless Chromium and its driver (apt-get install chromium chromium-driver)")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")  # no analytics banner over the grid
    from selenium.webdriver.common.by import By

    from crust_clean.errors import CrustCleanError
    from crust_clean.review.app import launch_review
    from crust_clean.review.decision_store import record_decision
    from crust_clean.review.fiftyone import (DUPLICATES_VIEW, EMBEDDINGS_WORKSPACE, VISUALIZATION_KEY,
                                            export_to_fiftyone)
    from crust_clean.run.folder import Run

    try:
        Run(args.run)
    except CrustCleanError as err:
        sys.exit(f"screenshot: {err} (make demo writes demo/run)")
    dataset = export_to_fiftyone(args.run, name="crust-clean-screenshot", persistent=False, overwrite=True,
                                 top=48).dataset
    queue = dataset.load_saved_view("to review")
    for decision, ids in (("drop", queue.values("id")[:4]), ("keep", queue.values("id")[4:6])):
        record_decision(dataset.select(ids), decision)
    port = free_port()
    session = launch_review(args.run, name=dataset.name, port=port, remote=True)
    driver = browser()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        click_text(driver, "Dismiss")  # FiftyOne's "Explore Enterprise" pop-over, shown on a first visit
        time.sleep(args.seconds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        session.spaces = dataset.load_workspace(EMBEDDINGS_WORKSPACE)
        session.view = dataset.sort_by("crust_score", reverse=True)  # every point on the map, suspects first
        click_text(driver, VISUALIZATION_KEY)
        label = driver.find_element(By.XPATH, "//*[normalize-space(text())='Color by']/..")
        click_text(driver, "None", within=label)
        click_text(driver, "crust_score")
        time.sleep(args.seconds)
        driver.save_screenshot(str(args.embeddings_out))
        session.spaces = None  # the samples grid alone, on the saved view of the near-duplicate groups
        session.view = dataset.load_saved_view(DUPLICATES_VIEW)
        time.sleep(args.seconds)
        driver.save_screenshot(str(args.duplicates_out))
    finally:
        driver.quit()
        session.close()
        dataset.delete()
    print(f"wrote {args.out}, {args.embeddings_out} and {args.duplicates_out}")


if __name__ == "__main__":
    main()
