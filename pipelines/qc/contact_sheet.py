"""Contact sheets: a PNG grid of frames spread evenly over a video, each labelled with its time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def contact_sheet(
    frames: list[np.ndarray], labels: list[str] | None = None, cols: int = 4, tile_width: int = 256
) -> np.ndarray:
    """One RGB image: the frames resized to `tile_width` wide, in rows of `cols`, labels drawn at the top left."""
    import cv2

    if not frames:
        raise ValueError("no frames for a contact sheet")
    h, w = frames[0].shape[:2]
    tile_h = max(1, int(round(h * tile_width / w)))
    rows = -(-len(frames) // cols)
    sheet = np.full((rows * tile_h, cols * tile_width, 3), 24, np.uint8)
    for i, frame in enumerate(frames):
        tile = cv2.resize(frame, (tile_width, tile_h), interpolation=cv2.INTER_AREA)
        if labels:
            cv2.putText(tile, labels[i], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                tile, labels[i], (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
        r, c = divmod(i, cols)
        sheet[r * tile_h : (r + 1) * tile_h, c * tile_width : (c + 1) * tile_width] = tile
    return sheet


def sheet_indices(total: int, n: int = 16) -> list[int]:
    """The frames of a contact sheet: `n` spread evenly over `total` (fewer when the clip is shorter)."""
    total = max(total, 1)
    return sorted(set(np.linspace(0, total - 1, num=min(n, total)).round().astype(int).tolist()))


def sheet_label(index: int, fps: float) -> str:
    return f"{index / fps:5.2f}s  #{index}"


def save_contact_sheet(
    frames: list[np.ndarray],
    labels: list[str],
    out_png: str | os.PathLike,
    cols: int = 4,
    tile_width: int = 256,
) -> Path:
    """contact_sheet() of the frames written to `out_png` (through a temporary name)."""
    import cv2

    out_png = Path(out_png)
    sheet = contact_sheet(frames, labels, cols, tile_width)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.tmp.png")
    if not cv2.imwrite(os.fspath(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {tmp}")
    tmp.replace(out_png)
    return out_png
