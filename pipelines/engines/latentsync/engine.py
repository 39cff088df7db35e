"""Engines "latentsync-1.5" and "latentsync-1.6": the persona's frames with the mouth region regenerated to the speech.

prepare (cached in the ArrayCache): the persona source and each per-emotion look as frames at the job fps (a video
is resampled by timestamps; a still is one frame), the face track (MediaPipe landmarks, smoothed; frames without a
face are flagged), LatentSync's anchors and the per-frame similarity alignment to its template (with upstream's
nose-bias smoothing). Frames are decoded again at render time: nothing per frame is held in memory.

render: the output is cut into 16-frame chunks on a fixed grid from frame 0. Per chunk: read the chunk's source
frames (ping-pong through the source when the speech is longer), pre-condition them with the emotion track's
upper-face warps, align and crop the faces, compute that chunk's audio windows, run the pipeline (one shared noise
draw for the whole video from the job seed; the VAE encode samples use a generator seeded by (seed, chunk), so a
chunk's frames do not depend on the chunks before it and `render(start=k)` reproduces a full render), optionally
match colours, and paste back with the feathered blend. Source frames without a face pass through, with the face
helper's cross-fade weights around them. Only one chunk of frames is in memory at a time.

Emotion: brows, eyes, blinks and the cheek lift of a smile come from the expression warps applied to the source
frames before LatentSync sees them (they are its reference, and everything outside the mouth region is kept from
them); the mouth is LatentSync's. A persona's look for an emotion (its own clip or photo) becomes the source while
that emotion dominates the track. Head-motion parameters are not used (the source video supplies head motion).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.cache import sha256_file
from pipelines.engines.base import ArrayCache, Frame, Progress, RenderSettings
from pipelines.errors import InputError, RenderError
from pipelines.expression.track import PARAMS, ExpressionTrack
from pipelines.speech.track import Speech

PREPARE_VERSION = "latentsync-prepare-1"
CHUNK_FRAMES = 16
DEEP_CACHE_INTERVAL = 3
FADE_FRAMES = 4  # frames over which the regenerated face fades in/out around frames without a face
MAX_STILL_SIDE = 1024  # a large photo persona is scaled down to this (long side) unless the job sets a size
LOOK_THRESHOLD = 0.5  # an emotion's look takes over once the emotion is at least this strong
UPPER_EPS = 1e-3
_UPPER = ("brow_raise", "brow_lower", "brow_inner", "eye_open", "blink", "smile")
_IDLE = (
    "blink",
    "head_yaw",
    "head_pitch",
    "head_roll",
)  # idle life, not an emotion: ignored when picking a look


@dataclass
class SourceClip:
    """One source (the persona's or a look) at the job fps with its face track and alignment."""

    path: Path
    still: bool
    size: tuple[int, int] | None  # (w, h) the frames are read at
    points: np.ndarray  # (n, 478, 2) smoothed landmarks (held through gaps)
    found: np.ndarray  # (n,) bool
    weights: np.ndarray  # (n,) float: the regenerated face's blend weight (0 = pass through)
    matrices: np.ndarray  # (n, 2, 3) frame -> crop alignment

    @property
    def n(self) -> int:
        return int(self.found.shape[0])


@dataclass
class LatentSyncPrepared:
    clips: dict[str, SourceClip]  # "" = the persona's source, else emotion name -> its look
    look_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    fps: float = 25.0


def pingpong(i: int, n: int) -> int:
    """Upstream's loop for speech longer than the source: forwards, then backwards (ends shown twice), ..."""
    if n <= 1:
        return 0
    k, r = divmod(i, n)
    return r if k % 2 == 0 else n - 1 - r


def _resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def color_match(generated: np.ndarray, source: np.ndarray, keep: np.ndarray, band: int = 6) -> np.ndarray:
    """Shift the regenerated region's colour so that, along the inside of its border, it matches the source face.

    generated, source: (F, R, R, 3) uint8 crops; keep: (R, R) mask (1 keep). The per-channel mean offset is measured
    on a `band`-pixel ring just inside the regenerated region (skin in both images) and applied to the regenerated
    region only, weighted by 1 - keep, so kept pixels are untouched.
    """
    import cv2

    regen = (keep < 0.5).astype(np.uint8)
    inner = regen & (1 - cv2.erode(regen, np.ones((2 * band + 1,) * 2, np.uint8)))
    ring = inner.astype(bool)
    if not ring.any():
        return generated
    g = generated.astype(np.float32)
    offset = source[:, ring].astype(np.float32).mean(axis=1) - g[:, ring].mean(axis=1)  # (F, 3)
    g += offset[:, None, None, :] * (1.0 - keep)[None, :, :, None]
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


class _Reader:
    """Frames of one source by index, decoding forwards and restarting only when asked for an earlier frame."""

    def __init__(self, clip: SourceClip, fps: float):
        from pipelines.media.video_in import open_source

        self.src = open_source(clip.path, fps, clip.size)
        self._it: Iterator[np.ndarray] | None = None
        self._pos = 0

    def get(self, indices: list[int]) -> dict[int, np.ndarray]:
        if self.src.is_still:
            image = next(self.src.frames(0, 1))
            return {i: image for i in indices}
        wanted = sorted(set(indices))
        lo, hi = wanted[0], wanted[-1]
        if self._it is None or self._pos > lo:
            self._it = self.src.frames(start=lo)
            self._pos = lo
        out: dict[int, np.ndarray] = {}
        while self._pos <= hi:
            frame = next(self._it)
            if self._pos in wanted:
                out[self._pos] = frame
            self._pos += 1
        return out


class LatentSyncEngine:
    """LatentSync 1.5 (256 px faces) or 1.6 (512 px faces) on a diffusers pipeline.

    Options: device ("cpu", "cuda", ...; default: cuda when available), weights_dir / lock_path (where pipelines.weights finds the converted
    files), components (a dict of ready modules: unet, vae, audio_encoder; skips the weights folder), chunk_frames,
    resolution (the face crop size; the official weights are trained at 256 for 1.5 and 512 for 1.6 only: other
    sizes are for tests with tiny models and experiments). Without the option, TALKREEL_LATENTSYNC_RESOLUTION sets
    it, so a test can reach the engine through `talkreel render`, which creates engines by name alone.
    """

    def __init__(
        self,
        engine_id: str,
        device: str | None = None,
        weights_dir: str | Path | None = None,
        lock_path: str | Path | None = None,
        components: dict[str, Any] | None = None,
        chunk_frames: int = CHUNK_FRAMES,
        resolution: int | None = None,
    ):
        from pipelines.engines.latentsync.unet import MAX_FRAMES, RESOLUTIONS

        if engine_id not in RESOLUTIONS:
            raise ValueError(f"unknown LatentSync engine {engine_id!r}; known: {', '.join(RESOLUTIONS)}")
        if not 1 <= chunk_frames <= MAX_FRAMES:
            raise ValueError(f"chunk_frames must be 1..{MAX_FRAMES}, got {chunk_frames}")
        self.name = engine_id
        import os

        resolution = resolution or int(os.environ.get("TALKREEL_LATENTSYNC_RESOLUTION", "0") or 0)
        self.resolution = int(resolution or RESOLUTIONS[engine_id])
        if self.resolution <= 0 or self.resolution % 64:
            raise ValueError(f"resolution must be a positive multiple of 64, got {self.resolution}")
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.chunk_frames = chunk_frames
        self._components = components
        self._pipe = None
        self._paths: dict[str, Path] = {}
        self._lock_path = Path(lock_path) if lock_path else None
        if components is None:
            from pipelines.weights.store import resolve

            # disk only: missing or unconverted weights fail here (exit 4, naming the command to run)
            self._paths = resolve(
                engine_id,
                Path(weights_dir) if weights_dir else None,
                Path(lock_path) if lock_path else None,
            )

    @classmethod
    def v15(cls, **options: Any) -> LatentSyncEngine:
        return cls("latentsync-1.5", **options)

    @classmethod
    def v16(cls, **options: Any) -> LatentSyncEngine:
        return cls("latentsync-1.6", **options)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "device": self.device,
            "resolution": self.resolution,
            "chunk_frames": self.chunk_frames,
        }
        if self._paths:
            info["weights"] = self._weights_info()
        if self._pipe is not None:
            info["unet_block_out_channels"] = list(self._pipe.unet.config.block_out_channels)
        return info

    def _weights_info(self) -> list[dict[str, Any]]:
        """Each weight file with its hub repo and the revision weights.lock pins (None when unlocked)."""
        from pipelines.weights.manifest import entries
        from pipelines.weights.store import locked_revisions

        revisions = locked_revisions(self.name, self._lock_path)
        repos = {w.role: w.repo for w in entries(self.name)}
        return [
            {
                "role": role,
                "file": str(path),
                "repo": repos.get(role),
                "revision": revisions.get(repos.get(role)),
            }
            for role, path in self._paths.items()
        ]

    # ---- models -----------------------------------------------------------------------------------------------
    def pipeline(self, dtype_name: str = "auto", device: str | None = None):
        """The LatentSyncPipeline with this engine's weights (loaded once, then moved/cast as asked)."""
        import torch

        from pipelines.engines.latentsync.pipeline import LatentSyncPipeline, make_scheduler

        device = device or self.device
        dtype = _resolve_dtype(dtype_name, device)
        if self._pipe is None:
            comps = self._components or self._load_components()
            self._pipe = LatentSyncPipeline(
                unet=comps["unet"],
                vae=comps["vae"],
                scheduler=comps.get("scheduler") or make_scheduler(),
                audio_encoder=comps["audio_encoder"],
            )
        pipe = self._pipe
        for module in (pipe.unet, pipe.vae, pipe.audio_encoder):
            p = next(module.parameters())
            if p.device != torch.device(device) or p.dtype != dtype:
                module.to(device=device, dtype=dtype)
        return pipe

    def _load_components(self) -> dict[str, Any]:
        from diffusers import AutoencoderKL

        from pipelines.audio_features.encoder import load_encoder
        from pipelines.engines.latentsync.unet import CheckpointMismatchError, load_unet_file

        try:
            unet = load_unet_file(self._paths["unet"], self.name)
        except CheckpointMismatchError as exc:
            raise InputError(self._paths["unet"], "unet", str(exc)) from None
        vae = AutoencoderKL.from_pretrained(
            str(self._paths["vae"]), local_files_only=True, low_cpu_mem_usage=False
        ).eval()
        try:
            encoder = load_encoder(self._paths["whisper"], dims_path=self._paths.get("whisper_dims"))
        except ValueError as exc:
            raise InputError(self._paths["whisper"], "whisper", str(exc)) from None
        return {"unet": unet, "vae": vae, "audio_encoder": encoder}

    # ---- prepare ----------------------------------------------------------------------------------------------
    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache) -> LatentSyncPrepared:
        sources = {
            "": Path(persona.source),
            **{k: Path(v) for k, v in (getattr(persona, "looks", None) or {}).items()},
        }
        clips = {}
        for key, path in sources.items():
            clips[key] = self._prepare_clip(path, settings, cache, "source" if not key else f"looks.{key}")
        if not clips[""].found.any():
            raise RenderError(f"{persona.source}: no face found in the persona source")
        vectors: dict[str, np.ndarray] = {}
        if len(clips) > 1:
            from pipelines.expression.build import emotion_table

            table = emotion_table(getattr(persona, "emotions", None) or {})
            vectors = {k: table[k] for k in clips if k and k in table}
        return LatentSyncPrepared(clips, vectors, settings.fps)

    def _prepare_clip(
        self, path: Path, settings: RenderSettings, cache: ArrayCache, field_name: str
    ) -> SourceClip:
        from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template
        from pipelines.face.blend import passthrough_crossfade
        from pipelines.media.video_in import open_source

        if not path.is_file():
            raise InputError(path, field_name, "file not found")
        probe = open_source(path, settings.fps)
        size = tuple(settings.size) if settings.size else None
        if size is None and probe.is_still:
            w, h = probe.width, probe.height
            scale = min(1.0, MAX_STILL_SIDE / max(w, h))
            size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
        key = hashlib.sha256(
            f"{PREPARE_VERSION}|{sha256_file(path)}|{size}|{settings.fps}|{self.resolution}".encode()
        ).hexdigest()[:32]

        def compute() -> dict[str, np.ndarray]:
            src = open_source(path, settings.fps, size)
            if src.is_still:
                from pipelines.face.landmarks import detect_faces

                faces = detect_faces(next(src.frames(0, 1)), max_faces=1)
                found = np.array([bool(faces)])
                points = (faces[0].points if faces else np.zeros((478, 2), np.float32))[None]
            else:
                from pipelines.face.track import track_faces

                track = track_faces(src.frames())
                found, points = track.found, track.smoothed
            template = latentsync_template(self.resolution)
            matrices = np.zeros((len(found), 2, 3))
            if found.any():
                matrices, _ = alignment_matrices(latentsync_anchors(points), template)
            return {
                "points": points.astype(np.float32),
                "found": found.astype(np.uint8),
                "matrices": matrices,
            }

        arrays = cache.get_or_compute("latentsync", key, compute)
        found = arrays["found"].astype(bool)
        return SourceClip(
            path=path,
            still=probe.is_still,
            size=size,
            points=arrays["points"],
            found=found,
            weights=passthrough_crossfade(found, FADE_FRAMES),
            matrices=arrays["matrices"],
        )

    def frame_size(self, prepared: LatentSyncPrepared) -> tuple[int, int]:
        """The persona source's frame size: rendered frames are its frames with the mouth region regenerated."""
        clip = prepared.clips[""]
        if clip.size is not None:
            return (int(clip.size[0]), int(clip.size[1]))
        from pipelines.media.video_in import open_source

        src = open_source(clip.path, prepared.fps)
        return (src.width, src.height)

    # ---- render -----------------------------------------------------------------------------------------------
    def look_for_frames(self, prepared: LatentSyncPrepared, values: np.ndarray) -> list[str]:
        """Per frame, the look whose emotion dominates the expression rows ("" = the persona's own source)."""
        if not prepared.look_vectors:
            return [""] * len(values)
        cols = [i for i, p in enumerate(PARAMS) if p not in _IDLE]
        names = list(prepared.look_vectors)
        vecs = np.stack([prepared.look_vectors[k][cols] for k in names])  # (E, P)
        norms = np.maximum((vecs * vecs).sum(axis=1), 1e-9)
        amount = values[:, cols] @ vecs.T / norms  # least-squares strength of each emotion alone
        best = amount.argmax(axis=1)
        return [names[b] if amount[i, b] >= LOOK_THRESHOLD else "" for i, b in enumerate(best)]

    def render(
        self,
        prepared: LatentSyncPrepared,
        speech: Speech,
        expression: ExpressionTrack,
        settings: RenderSettings,
        progress: Progress | None = None,
        start: int = 0,
    ) -> Iterator[Frame]:
        import torch

        from pipelines.audio_features.features import SpeechFeatures
        from pipelines.engines.latentsync.pipeline import DEFAULT_SEED
        from pipelines.face.align import latentsync_template, warp_to_crop
        from pipelines.face.blend import paste_back
        from pipelines.face.mask import latentsync_mask

        opts = settings.engine
        steps = int(getattr(opts, "steps", 20))
        guidance = float(getattr(opts, "guidance", 1.5))
        deep = DEEP_CACHE_INTERVAL if getattr(opts, "deep_cache", False) else None
        # the engine's own device option wins over the settings' default
        device = self.device
        pipe = self.pipeline(getattr(opts, "dtype", "auto"), device)
        low_vram = bool(getattr(opts, "low_vram", False))
        # low-VRAM: VAE one image at a time and the two guidance halves one after the other (same results)
        pipe.vae.use_slicing = low_vram
        n = speech.n_frames
        if expression.n_frames != n:
            raise RenderError(f"expression track has {expression.n_frames} frames, speech {n}")
        samples = _at_16k(speech.samples, speech.sample_rate)
        feats = SpeechFeatures(
            pipe.audio_encoder, samples, overlap_windows=bool(getattr(opts, "overlap_windows", False))
        )
        template = latentsync_template(self.resolution)
        keep = latentsync_mask(self.resolution)
        seed = DEFAULT_SEED if settings.seed is None else int(settings.seed)
        noise = pipe.prepare_noise(self.resolution, torch.Generator().manual_seed(seed))
        looks = self.look_for_frames(prepared, expression.values)
        readers: dict[str, _Reader] = {}
        rigs: dict[tuple[str, int], Any] = {}
        done = 0
        ch = self.chunk_frames
        for c in range(start // ch, (n + ch - 1) // ch):
            idx = list(range(c * ch, min((c + 1) * ch, n)))
            plan = []
            for i in idx:
                clip = prepared.clips[looks[i]]
                plan.append((looks[i], clip, pingpong(i, clip.n)))
            frames = []
            got = {}
            for key in dict.fromkeys(k for k, _, _ in plan):  # each source once per chunk, in first-use order
                if key not in readers:
                    readers[key] = _Reader(prepared.clips[key], prepared.fps)
                got[key] = readers[key].get([s for k, _, s in plan if k == key])
            for (key, clip, s), i in zip(plan, idx, strict=True):
                frame = got[key][s]
                frames.append(self._expressive(frame, clip, key, s, expression.values[i], rigs))
            crops = np.stack(
                [
                    warp_to_crop(f, clip.matrices[s], template)
                    for f, (_, clip, s) in zip(frames, plan, strict=True)
                ]
            )
            windows = feats.frame_windows(idx, settings.fps)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + c + 1)
            faces = pipe(
                crops,
                windows,
                keep,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator,
                latents=noise,
                chunk_frames=ch,
                deep_cache_interval=deep,
                sequential_cfg=low_vram,
            )
            if getattr(opts, "color_match", False):
                faces = color_match(faces, crops, keep)
            for j, i in enumerate(idx):
                _, clip, s = plan[j]
                weight = float(clip.weights[s])
                image = paste_back(frames[j], faces[j], clip.matrices[s], template.crop_size, weight)
                if i >= start:
                    done += 1
                    yield Frame(image=image, face_found=bool(clip.found[s]))
            if progress is not None:
                progress(done)

    @staticmethod
    def _expressive(frame, clip: SourceClip, key: str, s: int, row: np.ndarray, rigs: dict) -> np.ndarray:
        """The source frame with the emotion track's upper-face expression (brows, eyes, cheeks) warped in."""
        if not clip.found[s]:
            return frame
        params = {p: float(row[PARAMS.index(p)]) for p in _UPPER}
        if max(abs(v) for v in params.values()) < UPPER_EPS:
            return frame
        from pipelines.expression.warp import FaceRig

        rig_key = (key, 0 if clip.still else s)
        rig = rigs.get(rig_key)
        if rig is None:
            rig = FaceRig(clip.points[s], frame.shape, regions="upper")
            if len(rigs) >= 2 * CHUNK_FRAMES:  # only the current neighbourhood of the source is worth keeping
                rigs.pop(next(iter(rigs)))
            rigs[rig_key] = rig
        return rig.apply(frame, params)


def _at_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    samples = np.asarray(samples, np.float32)
    if rate == 16000:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate), 16000)
    return resample_poly(samples, 16000 // g, int(rate) // g).astype(np.float32)
