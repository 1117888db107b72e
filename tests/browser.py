"""A real headless browser for tests that look at a page: Debian's chromium renders a file,
reports the page's own check (``data-*`` attributes the page sets on ``<html>`` once loaded,
as fstore's drift report does) and takes a screenshot that must not be blank.

Example::

    attributes = page_attributes(path, tmp_path)   # {'data-images-loaded': 'true', 'data-errors': '0', ...}
    assert_not_blank(screenshot(path, tmp_path / "page.png", tmp_path))
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
WINDOW = (1200, 2000)


def chromium(*args: str, work: Path) -> subprocess.CompletedProcess[str]:
    """Run headless chromium with a fresh profile under ``work`` and no network chatter."""
    assert shutil.which(CHROMIUM), "Debian's chromium is needed (scripts/setup.sh installs it)"
    work.mkdir(parents=True, exist_ok=True)
    profile = work / f"chromium-profile-{len(list(work.glob('chromium-profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=180, check=False)


def page_attributes(page: Path, work: Path) -> dict[str, str]:
    """The attributes of ``<html>`` after the page loaded and ran its scripts (``--dump-dom``)."""
    run = chromium("--dump-dom", Path(page).resolve().as_uri(), work=work)
    assert run.returncode == 0, run.stderr[-2000:]
    root = re.search(r"<html([^>]*)>", run.stdout)
    assert root, run.stdout[:500]
    return dict(re.findall(r'([a-z][a-z0-9-]*)="([^"]*)"', root.group(1)))


def screenshot(page: Path, target: Path, work: Path) -> np.ndarray:
    """A screenshot of ``page`` written to ``target``, as an RGB array of floats in [0, 1]."""
    from matplotlib.image import imread

    run = chromium(f"--screenshot={target}", Path(page).resolve().as_uri(), work=work)
    assert run.returncode == 0 and target.exists(), run.stderr[-2000:]
    pixels = imread(target)[..., :3]
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0]), pixels.shape
    return pixels


def assert_not_blank(pixels: np.ndarray) -> None:
    """A screenshot with something on it: varied pixels, many colours."""
    assert pixels.std() > 0.05 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def pixels_of(pixels: np.ndarray, color: str, tolerance: float = 0.08) -> int:
    """How many pixels are within ``tolerance`` of ``#rrggbb``."""
    rgb = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(axis=-1) < tolerance).sum())
