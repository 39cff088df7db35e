"""A lip-sync score of a rendered file from LatentSync's SyncNet, computed as the lip-sync literature does (LSE).

The face of every frame is found (MediaPipe) and aligned as LatentSync aligns it (256 px); every `stride` frames,
the 16 frames from there give one visual embedding. The audio gives an embedding for every frame start. For each
offset k in -MAX_OFFSET..MAX_OFFSET frames, the mean distance D(k) between the visual embedding at s and the audio
embedding at s + k, over the windows s; then (Chung & Zisserman's SyncNet evaluation, "LSE-D / LSE-C" of Wav2Lip):
- `sync_distance` (LSE-D): min_k D(k), lower is better (unit embeddings: 0..2);
- `sync_confidence` (LSE-C): median_k D(k) - min_k D(k), higher is better: how much the best offset stands out;
- `sync_offset_ms`: the best offset, as how late the video is (positive: the mouth follows the sound late);
- `sync_similarity`: mean cosine similarity at offset 0, the figure LatentSync's own evaluation thresholds at 0.5.
Memory: the aligned faces of one window (16 x 256 x 256 x 3) and one embedding per frame.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InputError

MAX_OFFSET = 15  # frames either way (0.6 s at 25 fps), as SyncNet's evaluation searches
# Frames between visual windows: 16 = back to back. The full network's visual encoder costs seconds per window on
# a CPU (~8 s measured on a busy 2-core machine), so the default keeps a 30 s clip to ~47 windows.
STRIDE = 16


def sync_figures(
    path: str | os.PathLike,
    model: Any,
    stride: int = STRIDE,
    max_offset: int = MAX_OFFSET,
    face: Any = None,
) -> dict:
    """The sync figures of a video with audio (see the module docstring), from a pipelines.qc.syncnet.SyncNet;
    `face`: the person scored when the frames show several (pipelines.qc.measure.FrameMeter)."""
    import av
    import torch

    from pipelines.face import align
    from pipelines.media.audio import load_audio
    from pipelines.qc import syncnet as sn
    from pipelines.qc.measure import FrameMeter

    path = Path(path)
    device = next(model.parameters()).device
    template = align.latentsync_template(sn.RESOLUTION)
    window: deque[np.ndarray | None] = deque(maxlen=sn.NUM_FRAMES)
    visual: dict[int, np.ndarray] = {}  # window start -> embedding
    bias = None
    n_frames = 0
    with av.open(os.fspath(path)) as container, FrameMeter(face) as meter:
        if not container.streams.video:
            raise InputError(path, None, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        for index, frame in enumerate(container.decode(stream)):
            n_frames = index + 1
            image = frame.to_ndarray(format="rgb24")
            face_found = meter.face(image)
            if face_found is not None:
                anchors = align.latentsync_anchors(face_found.points)[None]
                matrices, bias = align.alignment_matrices(anchors, template, prev_bias=bias)
                window.append(align.warp_to_crop(image, matrices[0], template))
            else:
                window.append(None)
            start = index - sn.NUM_FRAMES + 1
            if start >= 0 and start % stride == 0 and all(f is not None for f in window):
                with torch.inference_mode():
                    faces_in = sn.faces_tensor(list(window))[None].to(device)
                    visual[start] = model.embed_faces(faces_in)[0].float().cpu().numpy()
    samples = load_audio(path, sn.SAMPLE_RATE)
    mel = sn.mel_spectrogram(samples)
    audio: dict[int, np.ndarray] = {}
    starts = sorted({s + k for s in visual for k in range(-max_offset, max_offset + 1)})
    batch: list[tuple[int, np.ndarray]] = []
    for s in starts:
        w = sn.mel_window(mel, s, fps)
        if w is not None:
            batch.append((s, w))
    for i in range(0, len(batch), 64):
        part = batch[i : i + 64]
        with torch.inference_mode():
            mels = torch.from_numpy(np.stack([w for _, w in part]))[:, None].to(device)
            emb = model.embed_audio(mels).float().cpu().numpy()
        audio.update({s: e for (s, _), e in zip(part, emb, strict=True)})
    return lse_figures(visual, audio, fps, max_offset) | {"sync_windows": len(visual), "frames": n_frames}


def lse_figures(
    visual: dict[int, np.ndarray], audio: dict[int, np.ndarray], fps: float, max_offset: int
) -> dict:
    """LSE-D, LSE-C, the best offset and the similarity at 0 from unit embeddings by window start."""
    out: dict[str, Any] = {
        "sync_confidence": None,
        "sync_distance": None,
        "sync_offset_ms": None,
        "sync_similarity": None,
    }
    mean_dist: dict[int, float] = {}
    for k in range(-max_offset, max_offset + 1):
        d = [float(np.linalg.norm(v - audio[s + k])) for s, v in visual.items() if s + k in audio]
        if d:
            mean_dist[k] = float(np.mean(d))
    if not mean_dist:
        return out
    best = min(mean_dist, key=lambda k: (mean_dist[k], abs(k)))
    values = np.array(list(mean_dist.values()))
    at_zero = [float(np.dot(v, audio[s])) for s, v in visual.items() if s in audio]
    out.update(
        sync_confidence=round(float(np.median(values) - mean_dist[best]), 4),
        sync_distance=round(mean_dist[best], 4),
        sync_offset_ms=round(-1000.0 * best / fps, 1) + 0.0,
        sync_similarity=round(float(np.mean(at_zero)), 4) if at_zero else None,
    )
    return out


def load_default_syncnet(weights_dir: Path | None = None) -> Any:
    """The SyncNet of the `syncnet` weights, on the GPU when there is one (WeightsMissingError, exit 4, naming
    the download command, when they are absent)."""
    import torch

    from pipelines.qc.syncnet import load_syncnet
    from pipelines.weights.store import resolve

    model = load_syncnet(resolve("syncnet", weights_dir)["syncnet"])
    return model.to("cuda") if torch.cuda.is_available() else model
