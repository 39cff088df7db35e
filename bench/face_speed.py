"""Face-analysis speed on 512x512 frames: landmarks/s (still mode, video tracking mode, full track_faces) and
align + paste-back frames/s at LatentSync's 256 and 512 resolutions; and QC's meter per frame (pipelines.qc.measure
FrameMeter) without a face pick and following a picked face of two (720x360, the smaller face). Prints figures;
asserts nothing.

    .venv/bin/python bench/face_speed.py [--frames 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pipelines and tests helpers

from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template, warp_to_crop
from pipelines.face.blend import paste_back
from pipelines.face.landmarks import LandmarkDetector
from pipelines.face.track import track_faces


def frames_512(n: int) -> list[np.ndarray]:
    """The astronaut portrait drifting and slightly rotating, so tracking has real work to do."""
    base = skimage.data.astronaut()
    out = []
    for i in range(n):
        m = cv2.getRotationMatrix2D((256, 256), 3.0 * np.sin(i / 9), 1.0)
        m[:, 2] += [6.0 * np.sin(i / 7), 4.0 * np.cos(i / 11)]
        out.append(cv2.warpAffine(base, m, (512, 512), borderMode=cv2.BORDER_REFLECT))
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.1f} frames/s ({1000 * seconds / n:6.2f} ms/frame)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    n = ap.parse_args().frames
    frames = frames_512(n)
    print(f"{n} frames of 512x512, {cv2.getNumThreads()} OpenCV threads")

    with LandmarkDetector("image", max_faces=1) as det:
        det.detect(frames[0])
        t = time.perf_counter()
        for f in frames:
            det.detect(f)
        print(f"landmarks, still mode (1 face)     {rate(n, time.perf_counter() - t)}")
    with LandmarkDetector("video", max_faces=1) as det:
        det.detect(frames[0])
        t = time.perf_counter()
        for f in frames:
            det.detect(f)
        print(f"landmarks, video tracking (1 face) {rate(n, time.perf_counter() - t)}")
    t = time.perf_counter()
    track = track_faces(frames)
    print(f"track_faces (max 3 faces, smooth)  {rate(n, time.perf_counter() - t)}  found {track.n_found}/{n}")

    for resolution in (256, 512):
        tmpl = latentsync_template(resolution)
        t = time.perf_counter()
        mats, _ = alignment_matrices(latentsync_anchors(track.smoothed), tmpl)
        t_mat = time.perf_counter() - t
        t = time.perf_counter()
        crops = [warp_to_crop(f, m, tmpl) for f, m in zip(frames, mats, strict=True)]
        t_warp = time.perf_counter() - t
        t = time.perf_counter()
        for f, c, m in zip(frames, crops, mats, strict=True):
            paste_back(f, c, m, tmpl.crop_size)
        t_blend = time.perf_counter() - t
        total = t_mat + t_warp + t_blend
        print(
            f"align+blend @ {resolution}: matrices {1e6 * t_mat / n:5.0f} us, warp {1000 * t_warp / n:5.2f} ms, "
            f"paste-back {1000 * t_blend / n:5.2f} ms  -> {rate(n, total)}"
        )

    qc_meter(n)


def qc_meter(n: int) -> None:
    """QC's per-frame cost: the single-face video mesh, and a picked face of two followed on a crop mesh."""
    from pipelines.qc.measure import FrameMeter
    from pipelines.spec.persona import FacePick
    from tests.face_helpers import two_faces

    group, _ = two_faces()
    frames = [np.roll(group, 2 * i, axis=1) for i in range(n)]
    for name, face in (("no pick", None), ("pick {index: 1}", FacePick(index=1))):
        with FrameMeter(face) as meter:
            meter.measure(frames[0])
            t, c = time.perf_counter(), time.process_time()
            found = sum(not np.isnan(meter.measure(f)[0]) for f in frames)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
        print(
            f"QC meter, two faces, {name:16s} {rate(n, wall)}, CPU {1000 * cpu / n:5.2f} ms/frame, "
            f"face found {found}/{n}"
        )


if __name__ == "__main__":
    main()
