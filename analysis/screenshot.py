"""`python -m analysis.screenshot report.html [--out report.png]`: render a report in headless Chromium,
to see it as a reader's browser shows it (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 2600) -> Path:
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        raise SystemExit(f"error: no headless browser found (looked for {', '.join(BROWSERS)}); "
                         "install Debian's chromium")
    with tempfile.TemporaryDirectory() as profile:
        # A fresh profile and no background networking: the report is a local, self-contained file.
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={out.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.screenshot", description=__doc__)
    parser.add_argument("page", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    print(screenshot(args.page, args.out or args.page.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
