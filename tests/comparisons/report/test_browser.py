"""report.html in a real browser: headless Chromium loads it offline, fetches nothing, and
draws every plot.

Two runs of Chromium: one on a copy of the page with a small probe script appended (the
report itself has no script), which writes each image's decoded size and position into the
DOM for ``--dump-dom``; one on the page itself, for a screenshot and a NetLog of every network
request. Any name lookup fails (``--host-resolver-rules``), so nothing leaves the machine even
if the page asked for it; the NetLog still records the request, and the test fails on it.

Skipped, with the reason, where Chromium is not installed; required under CI (CI=true) or
where BACKPROP_ORACLE_REQUIRE names "browser": there its absence fails the test. Debian:
``apt-get install -y chromium``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

if "reports" in os.environ.get("BACKPROP_ORACLE_REQUIRE", "").split(","):
    import matplotlib  # noqa: F401  (required here: a missing one fails, not skips)
else:
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install '.[reports]')")

from comparisons.modes.lockstep import run_lockstep
from comparisons.report.html import render_html
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec

pytestmark = pytest.mark.figures

FLAGS = [
    "--headless",
    "--no-sandbox",  # root in containers; the page is our own file
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=5000",
]
WIDTH = 1200
MAX_HEIGHT = 16384

PROBE = """<script>
addEventListener("load", () => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; };
  const verdict = document.querySelector(".verdict");
  const probe = {
    height: document.documentElement.scrollHeight,
    images: [...document.images].map((i) => ({complete: i.complete,
      naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, ...box(i)})),
    verdict: {...box(verdict), background: getComputedStyle(verdict).backgroundColor},
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(probe);
  document.body.append(out);
});
</script>"""


def chromium_path() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def without_chromium(environ) -> tuple[str, str]:
    """What a missing Chromium means: ("fail", why) where the browser test is required (CI,
    or BACKPROP_ORACLE_REQUIRE naming browser), else ("skip", why)."""
    if "browser" in environ.get("BACKPROP_ORACLE_REQUIRE", "").split(","):
        return "fail", "chromium is not installed, but BACKPROP_ORACLE_REQUIRE names browser"
    if environ.get("CI", "").lower() in {"true", "1"}:
        return "fail", "chromium is not installed, and CI must run the browser test"
    return "skip", "needs headless Chromium (Debian: apt-get install -y chromium)"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        outcome, why = without_chromium(os.environ)
        (pytest.fail if outcome == "fail" else pytest.skip)(why)
    return path


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [
        ({}, "skip"),  # plain tox on a machine without Chromium passes
        ({"BACKPROP_ORACLE_REQUIRE": "torch,jax,reports"}, "skip"),
        ({"CI": "true"}, "fail"),
        ({"BACKPROP_ORACLE_REQUIRE": "browser"}, "fail"),
    ],
)
def test_a_missing_chromium_is_a_skip_except_where_the_browser_test_is_required(environ, outcome):
    assert without_chromium(environ)[0] == outcome


def run_chromium(chromium: str, tmp: Path, *args: str) -> str:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    done = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def page_requests(netlog: Path) -> list[str]:
    """The URLs of every network request the page made (file: and data: loads never reach the
    network stack, so a self-contained page makes none). Requests the browser makes for
    itself (update checks, the clock) have no origin as their initiator and are left out."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start or "url" not in params:
            continue
        own = params.get("initiator") == "not an origin" and "file://" not in params.get(
            "network_isolation_key", ""
        )
        if not own:
            urls.append(params["url"])
    return urls


def png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def is_external(url: str) -> bool:
    return not url.startswith(("file:", "data:"))


def load(chromium: str, tmp: Path, page: Path) -> tuple[dict, Path, list[str]]:
    """Probe a copy of ``page``, then load ``page`` itself: (probe, screenshot, requests)."""
    probed = tmp / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    # the same width as the screenshot, so the probe's positions are the screenshot's
    dom = run_chromium(chromium, tmp, f"--window-size={WIDTH},1000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"no probe in the dumped DOM: {dom[:500]}"
    probe = json.loads(html.unescape(found.group(1)))

    shot, netlog = tmp / f"{page.stem}.png", tmp / f"{page.stem}.netlog.json"
    height = min(int(probe["height"]), MAX_HEIGHT)
    run_chromium(
        chromium,
        tmp,
        f"--screenshot={shot}",
        f"--window-size={WIDTH},{height}",
        f"--log-net-log={netlog}",
        "--net-log-capture-mode=Default",
        page.as_uri(),
    )
    return probe, shot, page_requests(netlog)


def problems(chromium: str, tmp: Path, page: Path) -> list[str]:
    """Everything wrong with ``page`` in the browser: network requests, images that did not
    decode to their size or are blank on the screenshot, a verdict banner without its colour."""
    from PIL import Image, ImageStat

    text = page.read_text(encoding="utf-8")
    probe, shot, requests = load(chromium, tmp, page)
    found = [f"requested {url}" for url in requests if is_external(url)]
    sources = re.findall(r'<img [^>]*src="([^"]*)"', text)
    if len(probe["images"]) != len(sources):
        found.append(f"{len(sources)} <img> in the file, {len(probe['images'])} in the DOM")
    screenshot = Image.open(shot).convert("RGB")
    for i, (img, src) in enumerate(zip(probe["images"], sources, strict=False)):
        size = (img["naturalWidth"], img["naturalHeight"])
        if src.startswith("data:image/png;base64,"):
            expected = png_size(base64.b64decode(src.split(",", 1)[1]))
            if not img["complete"] or size != expected:
                found.append(f"image {i}: decoded {size}, the PNG says {expected}")
        box = [round(v) for v in (img["x"], img["y"], img["width"], img["height"])]
        box[2:] = box[0] + box[2], box[1] + box[3]
        if box[3] > screenshot.height or box[2] <= box[0] or box[3] <= box[1]:
            found.append(f"image {i} at {box}: not on the screenshot")
            continue
        spread = ImageStat.Stat(screenshot.crop(tuple(box)).convert("L")).stddev[0]
        if spread < 10:  # a drawn plot: ~30 to 90; an empty or broken image: ~0 to 3
            found.append(f"image {i} at {box}: blank on the screenshot (stddev {spread:.1f})")

    verdict = probe["verdict"]
    expected_rgb = tuple(int(c) for c in re.findall(r"\d+", verdict["background"])[:3])
    inner = (verdict["x"] + 20, verdict["y"] + 4)  # inside the thick left border
    inner += (verdict["x"] + verdict["width"] - 4, verdict["y"] + verdict["height"] - 4)
    banner = screenshot.crop(tuple(round(v) for v in inner))
    common = max(banner.getcolors(maxcolors=1 << 20))[1]
    if any(abs(a - b) > 3 for a, b in zip(common, expected_rgb, strict=True)):
        found.append(f"verdict banner drawn {common}, its style says {expected_rgb}")
    return found


@pytest.fixture(scope="module")
def report() -> dict:
    spec = RunSpec(
        dataset="synthetic", synthetic_rows=12, epochs=1, batch_size=5, engines=("scratch",)
    )
    return run_lockstep(build_inputs(spec))


@pytest.mark.slow  # a real browser, end to end: the slow tier (required under CI)
def test_the_report_loads_offline_and_draws_every_plot(chromium, report, tmp_path):
    text = render_html(report)
    assert text.count("<img ") >= 2
    page = tmp_path / "report.html"
    page.write_text(text, encoding="utf-8")
    assert problems(chromium, tmp_path, page) == []


@pytest.mark.slow  # a real browser, end to end: the slow tier (required under CI)
def test_the_browser_check_catches_a_request_and_a_broken_image(chromium, report, tmp_path):
    """Not vacuous: an outside image is seen in the NetLog, a corrupt PNG on the screenshot."""
    text = render_html(report)
    head, data = text.split("data:image/png;base64,", 1)
    data = data[:400] + "A" * 400 + data[800:]  # the header intact, the pixels garbage
    leak = '<img src="https://example.com/plot.png" alt="outside" width="50" height="50">'
    page = tmp_path / "broken.html"
    page.write_text(
        (head + "data:image/png;base64," + data).replace("</main>", leak + "</main>"),
        encoding="utf-8",
    )
    found = problems(chromium, tmp_path, page)
    assert "requested https://example.com/plot.png" in found
    assert any(p.startswith("image 0 ") and "blank" in p for p in found), found
