"""Engines "latentsync-1.5" and "latentsync-1.6": the persona's frames with the mouth region regenerated to the speech.

prepare (cached in the ArrayCache): the persona source and each per-emotion look as frames at 25 fps (a video
is resampled by timestamps; a still is one frame), the face track (MediaPipe landmarks, smoothed; frames without a
face are flagged), LatentSync's anchors and the per-frame similarity alignment to its template (with upstream's
nose-bias smoothing). Frames are decoded again at render time: nothing per frame is held in memory.

render: at the model's 25 fps (the rate it was trained at; audio windows and source frames are taken at it), each
output frame at the job's fps showing the 25 fps frame nearest in time (pipelines.engines.model.retime). The
audio features come from the speech as decoded (`Speech.decoded_samples`, before loudness normalisation), as
upstream computes them. The 25 fps frames are cut into 16-frame chunks on a fixed grid from frame 0. Per chunk, prepared by one background
thread while the pipeline runs the previous chunk (`prefetch`): read the chunk's source frames (ping-pong through
the source when the speech is longer), pre-condition them with the emotion track's upper-face warps, compute that
chunk's audio windows, upload the face region of the frames once and crop the aligned faces on the device
(pipelines.face.batch_warp), with a content key per crop. Then, in the caller's thread: the pipeline (one shared
noise draw for the whole video from the job seed; the VAE encode samples use a generator seeded by (seed, chunk), so
a chunk's frames do not depend on the chunks before it and `render(start=k)` reproduces a full render; crops seen
before reuse their VAE encodings from a bounded cache), the optional colour match, the feathered paste-back on the
device, and one download of the face region. Source frames without a face pass through, with the face helper's
cross-fade weights around them. At most two chunks of frames (the one rendering, the one prefetched) are in memory.

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

from pipelines.audio_features.rate import at_16k
from pipelines.cache import sha256_file
from pipelines.engines.base import ArrayCache, Frame, Progress, RenderSettings, loop_frame
from pipelines.engines.model.chunks import CHUNK_FRAMES, chunk_frames, chunk_generator, chunks_from
from pipelines.engines.model.clock import StageClock
from pipelines.engines.model.color import color_match, color_ring
from pipelines.engines.model.device import default_device, place_modules, resolve_dtype
from pipelines.engines.model.emotion import dominant_emotions
from pipelines.engines.model.face_region import FaceRegions, crop_key
from pipelines.engines.model.prefetch import Prefetch, SideStream, adopt
from pipelines.engines.model.retime import Timeline
from pipelines.engines.model.source_frames import FrameReader
from pipelines.engines.model.weights import EngineWeights
from pipelines.errors import InputError, RenderError
from pipelines.expression.track import PARAMS, ExpressionTrack
from pipelines.speech.track import Speech

PREPARE_VERSION = "latentsync-prepare-2"  # 2: the persona's face pick (the largest by default)
MODEL_FPS = (
    25.0  # the rate LatentSync was trained at (audio windows, motion): rendered at it, retimed to the job's
)
DEEP_CACHE_INTERVAL = 3
FADE_FRAMES = 4  # frames over which the regenerated face fades in/out around frames without a face
MAX_STILL_SIDE = 1024  # a large photo persona is scaled down to this (long side) unless the job sets a size
LOOK_THRESHOLD = 0.5  # an emotion's look takes over once the emotion is at least this strong
UPPER_EPS = 1e-3
_UPPER = ("brow_raise", "brow_lower", "brow_inner", "eye_open", "blink", "smile")


@dataclass
class SourceClip:
    """One source (the persona's or a look) at the model's 25 fps with its face track and alignment."""

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


class LatentSyncEngine:
    """LatentSync 1.5 (256 px faces) or 1.6 (512 px faces) on a diffusers pipeline.

    Options: device ("cpu", "cuda", ...; default: cuda when available), weights_dir / lock_path (where pipelines.weights finds the converted
    files), components (a dict of ready modules: unet, vae, audio_encoder; skips the weights folder), chunk_frames,
    resolution (the face crop size; the official weights are trained at 256 for 1.5 and 512 for 1.6 only: other
    sizes are for tests with tiny models and experiments). Without the option, TALKREEL_LATENTSYNC_RESOLUTION sets
    it, so a test can reach the engine through `talkreel render`, which creates engines by name alone.
    prefetch (True): prepare the next chunk in a background thread while the pipeline runs (same frames either
    way). latent_cache_size (256): crops whose VAE encodings are kept for reuse (0: none kept across chunks).
    profile (False): time stages with device synchronisation (`stats` after a render; for bench/).
    compile_options ({"dynamic": False}): keyword arguments of torch.compile when a job sets `compile: true`.
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
        prefetch: bool = True,
        latent_cache_size: int = 256,
        profile: bool = False,
        compile_options: dict[str, Any] | None = None,
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
        self.device = default_device(device)
        self.chunk_frames = chunk_frames
        self.prefetch = bool(prefetch)
        self.profile = bool(profile)
        self.compile_options = dict(compile_options) if compile_options is not None else {"dynamic": False}
        self.stats: dict[str, Any] = {}
        self._latent_cache_size = int(latent_cache_size)
        self._latents = None  # pipeline.LatentCache, made with the pipeline
        self._latents_for: tuple[str, str] | None = None  # (device, dtype) the cached latents were made on
        self._warp = None  # face.batch_warp.FaceWarp for this engine's crop and device
        self._pipe = None
        self.weights = EngineWeights(engine_id, weights_dir, lock_path, components)

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
            "prefetch": self.prefetch,
            "latent_cache_size": self._latent_cache_size,
        }
        info.update(self.weights.describe())
        if self._pipe is not None:
            info["unet_block_out_channels"] = list(self._pipe.unet.config.block_out_channels)
            info["unet_compiled"] = self._pipe.unet_compiled
            info["offload_idle_modules"] = self._pipe.offloading
        if "reference_latents" in self.stats:
            info["reference_latents"] = dict(self.stats["reference_latents"])
        return info

    # ---- models -----------------------------------------------------------------------------------------------
    def pipeline(self, dtype_name: str = "auto", device: str | None = None, offload: bool = False):
        """The LatentSyncPipeline with this engine's weights (loaded once, then moved/cast as asked). With
        `offload`, the modules stay on the CPU and visit `device` only while used (pipeline.offload_idle_modules)."""
        import torch

        from pipelines.engines.latentsync.pipeline import LatentCache, LatentSyncPipeline, make_scheduler

        device = device or self.device
        dtype = resolve_dtype(dtype_name, device)
        if self._pipe is None:
            comps = self.weights.components or self._load_components()
            self._pipe = LatentSyncPipeline(
                unet=comps["unet"],
                vae=comps["vae"],
                scheduler=comps.get("scheduler") or make_scheduler(),
                audio_encoder=comps["audio_encoder"],
            )
        pipe = self._pipe
        home = torch.device("cpu") if offload else torch.device(device)
        pipe.offload_idle_modules(device if offload else None)
        place_modules((pipe.unet, pipe.vae, pipe.audio_encoder), home, dtype)
        made_for = (str(torch.device(device)), str(dtype))
        if self._latents is None or self._latents_for != made_for:
            self._latents = LatentCache(self._latent_cache_size)  # encodings from another device/dtype differ
            self._latents_for = made_for
        return pipe

    def _load_components(self) -> dict[str, Any]:
        from diffusers import AutoencoderKL

        from pipelines.audio_features.encoder import load_encoder
        from pipelines.engines.latentsync.unet import CheckpointMismatchError, load_unet_file

        try:
            unet = load_unet_file(self.weights.paths["unet"], self.name)
        except CheckpointMismatchError as exc:
            raise InputError(self.weights.paths["unet"], "unet", str(exc)) from None
        vae = AutoencoderKL.from_pretrained(
            str(self.weights.paths["vae"]), local_files_only=True, low_cpu_mem_usage=False
        ).eval()
        try:
            encoder = load_encoder(
                self.weights.paths["whisper"], dims_path=self.weights.paths.get("whisper_dims")
            )
        except ValueError as exc:
            raise InputError(self.weights.paths["whisper"], "whisper", str(exc)) from None
        return {"unet": unet, "vae": vae, "audio_encoder": encoder}

    # ---- prepare ----------------------------------------------------------------------------------------------
    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache) -> LatentSyncPrepared:
        sources = {
            "": Path(persona.source),
            **{k: Path(v) for k, v in (getattr(persona, "looks", None) or {}).items()},
        }
        clips = {}
        pick = getattr(
            persona, "face", None
        )  # the persona's face of several: in its source (looks take the largest)
        for key, path in sources.items():
            name = "source" if not key else f"looks.{key}"
            clips[key] = self._prepare_clip(path, settings, cache, name, None if key else pick)
        if not clips[""].found.any():
            raise RenderError(f"{persona.source}: no face found in the persona source")
        vectors: dict[str, np.ndarray] = {}
        if len(clips) > 1:
            from pipelines.expression.build import emotion_table

            table = emotion_table(getattr(persona, "emotions", None) or {})
            vectors = {k: table[k] for k in clips if k and k in table}
        return LatentSyncPrepared(clips, vectors, MODEL_FPS)

    def _prepare_clip(
        self, path: Path, settings: RenderSettings, cache: ArrayCache, field_name: str, pick: Any = None
    ) -> SourceClip:
        from pipelines.face.align import alignment_matrices, latentsync_anchors, latentsync_template
        from pipelines.face.blend import passthrough_crossfade
        from pipelines.face.pick import persona_face, pick_key
        from pipelines.media.video_in import open_source

        if not path.is_file():
            raise InputError(path, field_name, "file not found")
        probe = open_source(path, MODEL_FPS)
        size = tuple(settings.size) if settings.size else None
        if size is None and probe.is_still:
            w, h = probe.width, probe.height
            scale = min(1.0, MAX_STILL_SIDE / max(w, h))
            size = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
        key = hashlib.sha256(
            f"{PREPARE_VERSION}|{sha256_file(path)}|{size}|{MODEL_FPS}|{self.resolution}{pick_key(pick)}".encode()
        ).hexdigest()[:32]

        def compute() -> dict[str, np.ndarray]:
            src = open_source(path, MODEL_FPS, size)
            if src.is_still:
                face = persona_face(next(src.frames(0, 1)), pick, path)
                found = np.array([face is not None])
                points = (face.points if face is not None else np.zeros((478, 2), np.float32))[None]
            else:
                from pipelines.face.track import track_persona

                track = track_persona(src.frames(), pick, path)
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
    def configure(self, opts: Any):
        """The pipeline set up as a job's engine settings ask: dtype, low-VRAM (idle modules on the CPU, VAE one
        image at a time; the guidance halves one after the other are the render's part), VAE tiling, compiled
        UNet."""
        low_vram = bool(getattr(opts, "low_vram", False))
        pipe = self.pipeline(getattr(opts, "dtype", "auto"), self.device, offload=low_vram)
        pipe.vae.use_slicing = low_vram
        pipe.vae.use_tiling = bool(getattr(opts, "vae_tiling", False))
        compile_unet = bool(getattr(opts, "compile", False))
        if compile_unet != pipe.unet_compiled:
            pipe.compile_unet(compile_unet, **self.compile_options)
        return pipe

    def look_for_frames(self, prepared: LatentSyncPrepared, values: np.ndarray) -> list[str]:
        """Per frame, the look whose emotion dominates the expression rows ("" = the persona's own source)."""
        return dominant_emotions(values, prepared.look_vectors, LOOK_THRESHOLD)

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
        from pipelines.engines.latentsync.pipeline import DEFAULT_SEED, pixel_levels
        from pipelines.face.align import latentsync_template
        from pipelines.face.batch_warp import FaceWarp
        from pipelines.face.mask import latentsync_mask

        opts = settings.engine
        n = speech.n_frames
        if expression.n_frames != n:
            raise RenderError(f"expression track has {expression.n_frames} frames, speech {n}")
        steps = int(getattr(opts, "steps", 20))
        guidance = float(getattr(opts, "guidance", 1.5))
        deep = DEEP_CACHE_INTERVAL if getattr(opts, "deep_cache", False) else None
        low_vram = bool(getattr(opts, "low_vram", False))
        device = torch.device(self.device)
        pipe = self.configure(opts)
        clock = StageClock(sync=self.profile)
        pipe.stage_timer = clock
        template = latentsync_template(self.resolution)
        if self._warp is None or self._warp.device != device:
            self._warp = FaceWarp(template.crop_size, self.resolution, device)
        keep_np = latentsync_mask(self.resolution)
        keep = torch.as_tensor(keep_np, device=device)
        ring = torch.as_tensor(np.flatnonzero(color_ring(keep_np)), device=device)
        with pipe.placed("audio_encoder"):  # the features record the device their encoder runs on
            feats = SpeechFeatures(
                pipe.audio_encoder,
                at_16k(speech.decoded_samples, speech.sample_rate),
                overlap_windows=bool(getattr(opts, "overlap_windows", False)),
            )
        seed = DEFAULT_SEED if settings.seed is None else int(settings.seed)
        noise = pipe.prepare_noise(self.resolution, torch.Generator().manual_seed(seed))
        latents = self._latents
        before = (latents.encoded, latents.reused)
        timeline = Timeline(n, settings.fps, MODEL_FPS)  # rendered at 25 fps, each output frame the nearest
        values = expression.values[timeline.output_rows()]
        source = _ChunkSource(
            self, prepared, values, feats, pipe, clock, MODEL_FPS, str(pipe.unet.dtype), device, settings.loop
        )
        ch = self.chunk_frames
        make = SideStream(device).wrap(source.prepare) if self.prefetch else source.prepare
        chunks = Prefetch(
            make,
            chunks_from(timeline.model_of(start), timeline.n_model, ch),
            self.prefetch,
            name="latentsync-prefetch",
        )
        self.stats = {"stages": clock.seconds}
        done = 0
        for chunk in chunks:
            adopt([*chunk.faces.tensors, chunk.windows])
            faces = pipe(
                chunk.crops / 127.5 - 1.0,
                chunk.windows,
                keep,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=chunk_generator(seed, chunk.index),
                latents=noise,
                chunk_frames=ch,
                deep_cache_interval=deep,
                output_type="pt",
                sequential_cfg=low_vram,
                reference_keys=chunk.keys,
                latent_cache=latents,
            )
            with clock("paste-back"):
                faces = pixel_levels(faces).to(device)
                if getattr(opts, "color_match", False):
                    faces = color_match(faces, chunk.crops, keep, ring)
                images = chunk.faces.paste(self._warp, faces, chunk.weights)
            for j, m in enumerate(chunk.frame_indices):
                for _ in timeline.copies(m, start):
                    done += 1
                    yield Frame(image=images[j], face_found=bool(chunk.found[j]))
            if progress is not None:
                progress(done)
        self.stats.update(
            {
                "prefetch": self.prefetch,
                "prefetch_wait_s": chunks.waited,
                "reference_latents": {
                    "encoded": latents.encoded - before[0],
                    "reused": latents.reused - before[1],
                    "held": len(latents),
                },
            }
        )

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


@dataclass
class _Chunk:
    index: int
    frame_indices: list[int]
    found: np.ndarray  # (F,) bool
    weights: np.ndarray  # (F,) blend weights
    faces: FaceRegions  # the aligned crops on the device and what pasting back needs
    windows: Any  # (F, 50, C) on the device
    keys: list[tuple]

    @property
    def crops(self) -> Any:
        return self.faces.crops


class _ChunkSource:
    """Everything a chunk needs before the pipeline: source frames, expression warps, audio windows, crops and
    content keys. Used by one thread at a time, in chunk order (its readers and rigs hold decoding state)."""

    def __init__(
        self, engine, prepared, values, feats, pipe, clock, fps, dtype_name, device, loop="pingpong"
    ):
        self.engine = engine
        self.loop = loop  # the persona's: a source video shorter than the speech goes on this way
        self.prepared = prepared
        self.values = values  # expression rows per model frame
        self.looks = engine.look_for_frames(prepared, values)
        self.feats = feats
        self.pipe = pipe
        self.clock = clock
        self.fps = fps
        self.device = device
        self.n = len(values)
        self.readers: dict[str, FrameReader] = {}
        self.rigs: dict[tuple[str, int], Any] = {}
        self.key_prefix = (str(device), dtype_name, engine.resolution)

    def prepare(self, c: int) -> _Chunk:
        idx = chunk_frames(c, self.engine.chunk_frames, self.n)
        prepared = self.prepared
        plan = [(self.looks[i], prepared.clips[self.looks[i]]) for i in idx]
        plan = [
            (key, clip, loop_frame(i, clip.n, self.loop, ends_twice=True))
            for (key, clip), i in zip(plan, idx, strict=True)
        ]
        with self.clock("read"):
            got = {}
            for key in dict.fromkeys(k for k, _, _ in plan):  # each source once per chunk, in first-use order
                if key not in self.readers:
                    clip = prepared.clips[key]
                    self.readers[key] = FrameReader(clip.path, prepared.fps, clip.size)
                got[key] = self.readers[key].get([s for k, _, s in plan if k == key])
        with self.clock("expression"):
            frames = [
                self.engine._expressive(got[key][s], clip, key, s, self.values[i], self.rigs)
                for (key, clip, s), i in zip(plan, idx, strict=True)
            ]
        with self.clock("features"), self.pipe.placed("audio_encoder"):
            windows = self.feats.frame_windows(idx, self.fps)
        matrices = np.stack([clip.matrices[s] for _, clip, s in plan]).astype(np.float64)
        found = np.array([bool(clip.found[s]) for _, clip, s in plan])
        weights = np.array([float(clip.weights[s]) for _, clip, s in plan])
        warp = self.engine._warp
        cuda = self.device.type == "cuda"
        with self.clock("preprocessing"):
            faces = FaceRegions.upload(frames, matrices, warp, self.device, pinned=cuda)
            keys = [self.key_prefix + (crop_key(f, m, warp),) for f, m in zip(frames, matrices, strict=True)]
            windows = windows.to(self.device, non_blocking=cuda)
        return _Chunk(c, idx, found, weights, faces, windows, keys)
