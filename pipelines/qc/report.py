"""The review page of an output folder: `<out>/report/index.html` and its `assets/`, static and self-contained.

One section per output (every job record under the folder): a video player with its caption track, the contact
sheet, plots (mouth opening against the speech level, the emotion track, the speech level and loudness, face
sharpness over time; matplotlib), the QC figures marked against the ranges of real speech (docs/qc.md) and the
gates, engine and settings, timings, consent and provenance. A batch summary on top comes from the last
`talkreel render` into the folder (`.talkreel/last-batch.json`). No script, no server, no network: the page
opens from file:// (caption tracks are inlined as data: URLs, which browsers load from file:// pages).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

REPORT_DIR = "report"
_SKIP_DIRS = {".talkreel", REPORT_DIR}


def find_records(out_dir: Path) -> list[dict[str, Any]]:
    """Every job record under `out_dir` (JSON files with a record_version and an output), by output path."""
    records = []
    for path in sorted(out_dir.rglob("*.json")):
        if _SKIP_DIRS & set(path.relative_to(out_dir).parts[:-1]):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "record_version" in record and "output" in record:
            record["_record_path"] = str(path)
            records.append(record)
    return sorted(records, key=lambda r: r["output"])


def write_report(out_dir: str | os.PathLike) -> Path:
    """Write the review page of `out_dir`; returns the path of index.html."""
    from pipelines.errors import InputError

    out_dir = Path(out_dir).resolve()
    if not out_dir.is_dir():
        raise InputError(out_dir, None, "not a folder (the --out folder of a render)")
    report = out_dir / REPORT_DIR
    assets = report / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    records = find_records(out_dir)
    batch = _last_batch(out_dir)
    sections = [_output_section(r, report, assets, i) for i, r in enumerate(records)]
    page = _PAGE.format(
        title=html.escape(f"talkreel review: {out_dir.name}"),
        summary=_summary(batch, records),
        sections="\n".join(sections) or "<p>No rendered outputs in this folder.</p>",
    )
    index = report / "index.html"
    tmp = report / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(index)
    return index


def _last_batch(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out_dir / ".talkreel" / "last-batch.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _summary(batch: dict[str, Any] | None, records: list[dict[str, Any]]) -> str:
    if batch is None:
        return f"<p class=summary>{len(records)} outputs (no batch summary: not rendered by talkreel render here)</p>"
    counts = ", ".join(f"{n} {_esc(status)}" for status, n in batch.get("counts", {}).items())
    errors = [j for j in batch.get("jobs", []) if j.get("error")]
    rows = "".join(
        f"<li class=error><b>{_esc(Path(j['job']).name)}</b> ({_esc(j['status'])}): {_esc(j['error'])}</li>"
        for j in errors
    )
    return (
        f"<p class=summary>Last batch ({_esc(batch.get('finished', '?'))}): {counts}; exit code "
        f"{_esc(batch.get('exit_code'))}</p>" + (f"<ul class=errors>{rows}</ul>" if rows else "")
    )


def _rel(path: str | Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path), start)).as_posix()


def _output_section(record: dict[str, Any], report: Path, assets: Path, index: int) -> str:
    out = Path(record["output"])
    name = out.name
    vtt = out.with_suffix(".vtt")
    track = ""
    if vtt.is_file():
        data = base64.b64encode(vtt.read_bytes()).decode("ascii")
        # shown by default unless the captions are burnt into the picture already (they would show twice)
        burnt = ((record.get("composition") or {}).get("captions") or {}).get("burn_in")
        default = "" if burnt else " default"
        track = f'<track kind="captions" srclang="en" label="captions"{default} src="data:text/vtt;base64,{data}">'
    sheet = out.with_suffix(".contact.png")
    sheet_html = (
        f'<img class=sheet alt="contact sheet of {_esc(name)}" src="{_esc(_rel(sheet, report))}">'
        if sheet.is_file()
        else "<p>No contact sheet (rendered with --no-qc).</p>"
    )
    plot = _plot(record, assets / f"{index:03d}-{out.stem}.png")
    plot_html = (
        f'<img class=plot alt="plots of {_esc(name)}" src="{_esc(_rel(plot, report))}">'
        if plot
        else "<p>No QC tracks to plot (rendered with --no-qc).</p>"
    )
    engine = record.get("engine", {})
    persona = record.get("persona", {})
    composition = record.get("composition") or {}
    provenance = {
        "label": composition.get("label"),
        "watermark": composition.get("watermark"),
        "c2pa": record.get("provenance"),
    }
    return f"""
<section class=output id="out-{index}">
  <h2>{_esc(name)} <small>{_esc(record.get("kind", ""))} &middot; persona {_esc(persona.get("name", "?"))}</small></h2>
  <div class=media>
    <video controls preload="metadata" src="{_esc(_rel(out, report))}">{track}</video>
    {sheet_html}
  </div>
  {plot_html}
  <div class=facts>
    {_qc_table(record.get("qc"))}
    {_kv_table("Engine", {"name": engine.get("name"), **(engine.get("settings") or {})})}
    {_kv_table("Timings (s)", record.get("timings") or {})}
    {_kv_table("Consent", persona.get("consent") or {})}
    {_kv_table("Provenance", provenance)}
  </div>
  <p class=meta>job {_esc(record.get("job"))} &middot; created {_esc(record.get("created"))} &middot; frames
  {_esc((record.get("frames") or {}).get("output"))} (without a face: {_esc((record.get("frames") or {}).get("without_face"))})</p>
</section>"""


def _kv_table(title: str, values: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(json.dumps(v) if isinstance(v, (dict, list)) else v)}</td></tr>"
        for k, v in values.items()
    )
    return f"<table><caption>{_esc(title)}</caption>{rows}</table>"


def _qc_table(qc: dict[str, Any] | None) -> str:
    """The QC figures, each marked: within the range of real speech (docs/qc.md) or not, where one exists."""
    from pipelines.qc.figures import SPEECH_RANGES

    if not qc:
        return "<table><caption>QC</caption><tr><td>not measured (--no-qc)</td></tr></table>"
    checks = {
        **{k: (lambda v, lo=lo, hi=hi: lo <= v <= hi) for k, (lo, hi) in SPEECH_RANGES.items()},
        "silent_closed_share": lambda v: v >= 0.8,
        "frames_without_face": lambda v: v == 0,
        "duration_difference": lambda v: abs(v) <= 0.04,
        "av_offset_ms": lambda v: abs(v) <= 80,
        "face_sharpness_end_ratio": lambda v: 0.7 <= v <= 1.5,
    }
    rows = []
    for key, value in qc.items():
        mark = ""
        if key in checks and isinstance(value, (int, float)):
            ok = checks[key](value)
            mark = f'<span class="{"pass" if ok else "fail"}">{"pass" if ok else "check"}</span>'
        rows.append(
            f"<tr><th>{_esc(key)}</th><td>{_esc('-' if value is None else value)}</td><td>{mark}</td></tr>"
        )
    return f"<table class=qc><caption>QC figures</caption>{''.join(rows)}</table>"


def _plot(record: dict[str, Any], png: Path) -> Path | None:
    """Mouth opening against speech level, the emotion track, speech level and loudness, face sharpness."""
    tracks = record.get("qc_tracks")
    if not tracks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = float(tracks["fps"])
    levels = np.array(tracks["level_db"], float)
    t_all = np.arange(len(levels)) / fps
    idx = np.array(tracks["measured_frames"], int)
    t = idx / fps
    mouth = np.array([np.nan if v is None else v for v in tracks["mouth_opening"]], float)
    sharp = np.array([np.nan if v is None else v for v in tracks["face_sharpness"]], float)
    fig, axes = plt.subplots(4, 1, figsize=(10, 8.5), sharex=True, constrained_layout=True)
    ax = axes[0]
    ax.plot(t, mouth, "o-", ms=3, lw=0.8, color="tab:red", label="mouth opening (measured frames)")
    ax.set_ylabel("mouth opening")
    twin = ax.twinx()
    twin.plot(t_all, np.maximum(levels, -80), lw=0.6, color="tab:blue", alpha=0.6, label="speech level")
    twin.set_ylabel("level (dBFS)")
    ax.set_title("mouth opening and speech level")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    _emotion_panel(axes[1], record, t_all[-1] if len(t_all) else 1.0)
    ax = axes[2]
    window = max(1, int(round(0.4 * fps)))
    power = np.convolve(10 ** (levels / 10), np.ones(window) / window, mode="same")
    ax.plot(t_all, 10 * np.log10(power + 1e-12), lw=0.8, color="tab:green", label="level, 0.4 s RMS")
    lufs = (record.get("qc") or {}).get("loudness_lufs")
    if lufs is not None:
        ax.axhline(lufs, color="k", ls="--", lw=0.8, label=f"integrated {lufs:.1f} LUFS")
    ax.set_ylim(-80, 0)
    ax.set_ylabel("dBFS")
    ax.set_title("loudness over time")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[3]
    ax.plot(t, sharp, ".-", lw=0.8, ms=3, color="tab:purple")
    ax.set_ylabel("sharpness")
    ax.set_title("face sharpness (variance of the Laplacian)")
    ax.set_xlabel("seconds of the output")
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def _emotion_panel(ax: Any, record: dict[str, Any], duration: float) -> None:
    """The job's emotion entries as bars of their intensity (seconds of the speech, before any title card)."""
    entries = record.get("emotion") or []
    names = sorted({e["emotion"] for e in entries})
    colours = {n: f"C{i}" for i, n in enumerate(names)}
    for i, e in enumerate(entries):
        end = e.get("end")
        if end is None:
            end = entries[i + 1]["start"] if i + 1 < len(entries) else duration
        ax.barh(
            0, end - e["start"], left=e["start"], height=e.get("intensity", 1.0), color=colours[e["emotion"]]
        )
        ax.text(e["start"], 0, f" {e['emotion']} {e.get('intensity', 1.0):g}", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_title("emotion track (from the job; seconds of the speech)" if entries else "no emotion track")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fafafa; color: #222; }}
section.output {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1em; margin: 1.5em 0; }}
.media {{ display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; }}
video {{ max-width: 480px; max-height: 480px; background: #000; }}
img.sheet {{ max-width: 480px; }}
img.plot {{ max-width: 100%; margin-top: 1em; }}
.facts {{ display: flex; gap: 1em; flex-wrap: wrap; align-items: flex-start; margin-top: 1em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
caption {{ font-weight: bold; text-align: left; }}
th, td {{ border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }}
.pass {{ color: #fff; background: #2a7; padding: 0 4px; border-radius: 3px; }}
.fail {{ color: #fff; background: #c33; padding: 0 4px; border-radius: 3px; }}
.error {{ color: #a00; }}
.meta {{ color: #666; font-size: 0.8em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{summary}
{sections}
</body>
</html>
"""
