"""QC gates on `talkreel render` / `talkreel qc`, and the review page (`talkreel report`) in a real headless
Chromium: it loads without console errors, every video plays, caption tracks load, plots are there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.project_helpers import make_project

JOB = """\
kind: summary
persona: test
audio: {text: "Hello. This is the review page test.", voice: en}
emotion:
  - {start: 0, emotion: happy, intensity: 0.6}
  - {start: 1.5, emotion: thinking, intensity: 0.5}
output: {size: [256, 256]}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two jobs rendered with --report, a gate both pass and a gate file whose impossible sharpness limit both
    fail."""
    root = tmp_path_factory.mktemp("report")
    jobs = make_project(root, {"one": JOB, "two": JOB.replace("happy", "sad")})
    gates = root / "qc-gates.yaml"
    gates.write_text("fail_under: {frames: 1}\n")  # not a gateable figure: refused before rendering
    bad = invoke("render", str(jobs), "--out", str(root / "out"), "--qc-gate", str(gates), "--json")
    assert bad.exit_code == 2 and "unknown QC figure 'frames'" in bad.output
    assert not (root / "out").exists()
    gates.write_text("max:\n  face_sharpness_median: 1.0\n")
    result = invoke(
        "render", str(jobs), "--out", str(root / "out"), "--report", "--json",
        "--qc-gate", "mouth_opening_p95>=0", "--qc-gate", str(gates),
    )  # fmt: skip
    return root, result


def test_render_qc_gate_fails_each_output_with_one_line(rendered):
    root, result = rendered
    assert result.exit_code == 3, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert {j["status"] for j in jobs} == {"qc failed"}
    for j in jobs:
        assert j["error"].startswith(j["output"] + ": qc gate failed: face_sharpness_median ")
        assert Path(j["output"]).is_file()  # a failing output is kept, only reported
    # one line per failing output on stderr
    assert sum("qc gate failed" in line for line in result.stderr.splitlines()) == 2


def test_qc_command_gates(rendered, tmp_path):
    root, _ = rendered
    one = root / "out" / "one.mp4"
    ok = invoke("qc", str(one), "--fail-under", "mouth_opening_p95=0", "--max", "duration_difference=0.04")
    assert ok.exit_code == 0, ok.output
    failing = invoke(
        "qc", str(one), str(root / "out" / "two.mp4"), "--max", "mouth_opening_p95=0.01", "--json"
    )
    assert failing.exit_code == 3
    lines = [line for line in failing.stderr.splitlines() if "qc gate failed" in line]
    assert len(lines) == 2 and lines[0].startswith(f"{one}: qc gate failed: mouth_opening_p95 ")
    assert [f["gates"]["passed"] for f in json.loads(failing.stdout)] == [False, False]
    bad = invoke("qc", str(one), "--fail-under", "sync_confidence")
    assert bad.exit_code == 2 and "--fail-under: expected a number" in bad.output
    # a gated figure that was not measured fails rather than passing silently
    missing = invoke("qc", str(one), "--fail-under", "sync_confidence=1")
    assert missing.exit_code == 3 and "sync_confidence not measured" in missing.output


def test_report_page_files(rendered):
    root, _ = rendered
    index = root / "out" / "report" / "index.html"
    text = index.read_text()
    assert text.count("<video") == 2 and text.count('<track kind="captions"') == 2
    assert "2 qc failed" in text and "face_sharpness_median" in text
    assert "http://" not in text and "https://" not in text  # nothing from the network
    assert len(list((root / "out" / "report" / "assets").glob("*.png"))) == 2
    again = invoke("report", str(root / "out"), "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["report"] == str(index)
    assert invoke("report", str(root / "nowhere")).exit_code == 2


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (CI installs Debian's chromium)")
def test_report_page_in_a_headless_browser(rendered, tmp_path):
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    root, _ = rendered
    index = root / "out" / "report" / "index.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            videos = page.evaluate(
                """async () => {
                  const out = [];
                  for (const v of document.querySelectorAll('video')) {
                    v.muted = true;
                    const track = v.querySelector('track');
                    await v.play();
                    // playing, not a fixed wait: a loaded machine may need seconds to advance the clock
                    const until = Date.now() + 15000;
                    while (v.currentTime <= 0.1 && !v.error && Date.now() < until) {
                      await new Promise(r => setTimeout(r, 100));
                    }
                    out.push({time: v.currentTime, error: v.error && v.error.code,
                              track: track && track.readyState, cues: v.textTracks[0].cues.length});
                    v.pause();
                  }
                  return out;
                }"""
            )
            images = page.evaluate("() => [...document.images].map(i => [i.alt, i.naturalWidth])")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert errors == []
    assert len(videos) == 2
    for v in videos:
        assert v["error"] is None and v["time"] > 0.1  # it plays
        assert v["track"] == 2 and v["cues"] >= 1  # HTMLTrackElement.LOADED, with the script's cues
    plots = [w for alt, w in images if alt.startswith("plots of")]
    sheets = [w for alt, w in images if alt.startswith("contact sheet of")]
    assert len(plots) == 2 and len(sheets) == 2 and min(plots + sheets) > 100
    # the screenshot shows the page: not blank, the title's dark text on the light page
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (900, 1200) and pixels.std() > 20 and (pixels < 60).mean() > 0.005
