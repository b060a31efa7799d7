"""Screenshot of the FiftyOne App on a run's suspects view, for the README (``make screenshot``).

Exports RUN (default: the demo's run, ``make demo``) into a temporary FiftyOne dataset, serves the App
on localhost and photographs it with headless Chromium (Debian package ``chromium``).
Usage: ``python scripts/screenshot.py [RUN] [--out docs/fiftyone-suspects.png]``.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "demo" / "run"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "fiftyone-suspects.png")
    parser.add_argument("--seconds", type=int, default=20, help="time the App gets to render")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("screenshot: needs headless Chromium (apt-get install chromium)")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")  # no analytics banner over the grid
    from crust_clean.errors import CrustCleanError
    from crust_clean.review.fiftyone import export_to_fiftyone, launch_review
    from crust_clean.run.folder import Run

    try:
        Run(args.run)
    except CrustCleanError as err:
        sys.exit(f"screenshot: {err} (make demo writes demo/run)")
    dataset = export_to_fiftyone(args.run, name="crust-clean-screenshot", persistent=False, overwrite=True, top=48)
    port = free_port()
    session = launch_review(args.run, name=dataset.name, port=port, remote=True)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--screenshot={args.out}", "--window-size=1400,900", f"--user-data-dir={profile}",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--virtual-time-budget={args.seconds * 1000}", f"http://127.0.0.1:{port}/",
            ], check=True, capture_output=True, timeout=300)
    finally:
        session.close()
        dataset.delete()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
