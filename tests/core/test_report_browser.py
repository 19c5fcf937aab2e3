"""report.html in a real browser: headless Chromium lays it out, loads its images and screenshots it.

Skips, saying so, where no Chromium is installed; fails instead under CI (``CI`` set) or when
``CTFRAME_REQUIRE_BROWSER`` is set (``.ci/run`` installs Chromium and sets it), so the check cannot
vanish silently where it is meant to run.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.core.test_report import QUICKSTART_SECTIONS, tiny_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
TALLEST = 20000
"""Chromium's screenshots were reliable to about 16k pixels when this was set; the findings and
recalibration sections took the tiny run's report just past it (16.3k), and the screenshot checks below
still pass at that height."""
PROBE_HEIGHT = 900
"""The probe's window: shorter than the page, so the page's own height is what it measures."""

# Appended to a copy of the report only (the report itself holds no script): it records, once
# everything has loaded, where each section and image sits and whether each image decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  const box = (e) => { const r = e.getBoundingClientRect();
                       return {top: r.top + scrollY, left: r.left, width: r.width, height: r.height}; };
  const out = {
    height: document.documentElement.scrollHeight,
    sections: [...document.querySelectorAll("section")].map(s => ({id: s.id, ...box(s)})),
    images: [...document.images].map(i => ({data: i.src.startsWith("data:image/"), complete: i.complete,
                                             natural: i.naturalWidth, ...box(i)})),
  };
  const pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def find_browser() -> str | None:
    chosen = os.environ.get("CTFRAME_CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("CTFRAME_REQUIRE_BROWSER"))


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        message = (
            "no Chromium found (looked for " + ", ".join(BROWSERS) + "; set CTFRAME_CHROMIUM): "
            "install it with `apt-get install -y chromium`; .ci/run does"
        )
        if _required():
            pytest.fail(f"browser check required here (CI or CTFRAME_REQUIRE_BROWSER), but {message}")
        pytest.skip(message)
    return path


def _chromium(browser: str, profile: Path, *arguments: str, height: int) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{height}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("browser-run")) / "report.html"


def test_the_report_renders_every_section_and_loads_every_image(browser, report, tmp_path):
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")

    result = _chromium(
        browser,
        tmp_path / "profile",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
        height=PROBE_HEIGHT,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no probe in the dumped DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    layout = json.loads(html.unescape(match[1]))
    assert [s["id"] for s in layout["sections"]] == QUICKSTART_SECTIONS
    assert all(s["height"] > 40 and s["width"] > 600 for s in layout["sections"]), layout["sections"]
    images = layout["images"]
    thumbnails = [i for i in images if i["width"] == 96]
    assert len(images) >= 7 + 8 and len(thumbnails) >= 8  # plots, and the gallery's thumbnails
    assert all(i["data"] and i["complete"] and i["natural"] > 0 for i in images), "an image failed to load"
    assert layout["height"] <= TALLEST, "the report no longer fits one screenshot; raise TALLEST"

    shot = tmp_path / "report.png"
    result = _chromium(
        browser, tmp_path / "profile", f"--screenshot={shot}", report.as_uri(), height=layout["height"]
    )
    assert shot.is_file(), f"no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.int16)
    assert pixels.shape == (layout["height"], WIDTH)
    inked = np.nonzero((pixels < 200).any(axis=1))[0]
    assert inked.size and inked[-1] > layout["height"] - 200, "the end of the page is missing"
    for section in layout["sections"]:  # each section's area holds drawn text or images
        top, bottom = int(section["top"]), int(section["top"] + section["height"])
        area = pixels[top:bottom]
        assert (area < 128).mean() > 0.002, f"section {section['id']} looks blank in the screenshot"
    for image in images:  # every image is drawn, not an empty box
        top, left = int(image["top"]), int(image["left"])
        area = pixels[top : top + int(image["height"]), left : left + int(image["width"])]
        assert area.size and area.std() > 3, f"an image at y={top} is blank in the screenshot"
