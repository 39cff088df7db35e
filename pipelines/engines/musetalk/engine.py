"""Engine "musetalk-1.5": the preview engine's motion, with MuseTalk regenerating the lower face on every frame.

prepare: the preview engine's own (cached): a photo persona's face-centred crop and mesh, or a video persona's face
track. render: the preview engine renders the persona from the emotion track with the speech silenced (head motion,
blinks and expressions on a photo; a video persona's own motion, ping-pong looped, with the track's expressions;
the mouth closed), and MuseTalk regenerates the lower face of each frame from the speech:

- frames are cut into chunks of `batch_size` on a fixed grid from frame 0 (pipelines.engines.model.chunks); one
  background thread makes the next chunk while the models run this one (model.prefetch): preview frames, the mesh
  of each frame fitted on a crop around the face, as crop.py is calibrated (a video persona's face track refitted
  once per source frame; a photo's frame detected again, since the preview moved it), upstream's crop box and
  blend mask (crop.py), the 256 x 256 crops and the chunk's audio windows (audio.py);
- the VAE's latent distributions of each crop (masked and whole) are kept by crop content (model.latent_cache), so a
  looped video or a motionless photo is encoded once; the latents are drawn from a generator seeded by (seed,
  chunk), so `render(start=k)` gives the frames of a full render from k on;
- one UNet call per chunk, the decode, and the paste-back through the feathered mesh mask; where the speech is
  silent the paste fades out and the preview's closed mouth stays (silence.py; `close_in_silence: false` turns
  it off). Silent frames still go through the UNet, so the speech frames are the same with the gate on or off.

Frames without a face (or with a box too small to crop) pass through; a video persona's face weight fades around
such gaps as the preview engine's does. Memory does not depend on the clip's length: two chunks of frames, two 30 s
audio segments of encoder states and the bounded latent cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.audio_features.rate import at_16k
from pipelines.engines.base import ArrayCache, Frame, Progress, RenderSettings, loop_frame
from pipelines.engines.model.chunks import chunk_frames, chunk_generator, chunks_from
from pipelines.engines.model.clock import StageClock
from pipelines.engines.model.device import default_device, place_modules, resolve_dtype
from pipelines.engines.model.latent_cache import LatentCache
from pipelines.engines.model.prefetch import Prefetch
from pipelines.engines.model.weights import EngineWeights
from pipelines.engines.musetalk import crop as mt_crop
from pipelines.engines.musetalk import silence as mt_silence
from pipelines.errors import InputError, RenderError
from pipelines.expression.track import ExpressionTrack
from pipelines.face.pick import face_at
from pipelines.speech.track import Speech

ENGINE_ID = "musetalk-1.5"
RESOLUTION = 256
BATCH_SIZE = 8
FADE_FRAMES = 4  # as the preview engine fades its warp around face-less source frames
DEFAULT_SEED = 0


@dataclass
class _Chunk:
    index: int
    frames: list[int]
    images: list[np.ndarray]  # the preview's frames (RGB uint8)
    found: list[bool]
    faces: list[int]  # positions in the chunk regenerated (a face and a usable box)
    boxes: list[mt_crop.Box]
    masks: list[tuple[np.ndarray, tuple]]
    weights: list[float]
    crops: np.ndarray  # (len(faces), R, R, 3) uint8
    keys: list[str]
    windows: Any  # (len(faces), T, C) float tensor


class MuseTalkEngine:
    """MuseTalk 1.5 on diffusers/transformers modules.

    Options: device (default: cuda when available), weights_dir / lock_path (pipelines.weights), components (ready
    modules: unet, vae, whisper, feature_extractor; skips the weights folder), batch_size (frames per UNet call),
    resolution (the face crop; MuseTalk is trained at 256 only: other sizes are for tests with tiny models; without
    the option TALKREEL_MUSETALK_RESOLUTION sets it, so a test can reach the engine through `talkreel render`),
    prefetch, latent_cache_size, profile (stage times with device synchronisation, for bench/).
    """

    name = ENGINE_ID

    def __init__(
        self,
        device: str | None = None,
        weights_dir: str | Path | None = None,
        lock_path: str | Path | None = None,
        components: dict[str, Any] | None = None,
        batch_size: int | None = None,
        resolution: int | None = None,
        prefetch: bool = True,
        latent_cache_size: int = 256,
        profile: bool = False,
    ):
        from pipelines.engines.preview.engine import PreviewEngine

        resolution = resolution or int(os.environ.get("TALKREEL_MUSETALK_RESOLUTION", "0") or 0)
        self.resolution = int(resolution or RESOLUTION)
        if self.resolution <= 0 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        self.device = default_device(device)
        self.batch_size = batch_size
        self.prefetch = bool(prefetch)
        self.profile = bool(profile)
        self.stats: dict[str, Any] = {}
        self.preview = PreviewEngine()
        self._latents = LatentCache(latent_cache_size)
        self._latents_for: tuple[str, str] | None = None
        self._pipe = None
        self._audio = None  # (encoder, feature extractor)
        self.weights = EngineWeights(ENGINE_ID, weights_dir, lock_path, components)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "device": self.device,
            "resolution": self.resolution,
            "prefetch": self.prefetch,
        }
        info.update(self.weights.describe())
        if "reference_latents" in self.stats:
            info["reference_latents"] = dict(self.stats["reference_latents"])
        if "closed_in_silence" in self.stats:
            info["closed_in_silence"] = dict(self.stats["closed_in_silence"])
        return info

    # ---- models -----------------------------------------------------------------------------------------------
    def pipeline(self, dtype_name: str = "auto", device: str | None = None):
        """The MuseTalkPipeline (loaded once, then moved/cast as asked) and the audio encoder beside it."""
        import torch

        from pipelines.engines.musetalk.pipeline import MuseTalkPipeline

        device = device or self.device
        dtype = resolve_dtype(dtype_name, device)
        if self._pipe is None:
            comps = self.weights.components or self._load_components()
            self._pipe = MuseTalkPipeline(unet=comps["unet"], vae=comps["vae"])
            self._audio = (comps["whisper"], comps["feature_extractor"])
        place_modules((self._pipe.unet, self._pipe.vae, self._audio[0]), torch.device(device), dtype)
        made_for = (str(torch.device(device)), str(dtype))
        if self._latents_for != made_for:  # encodings made on another device or in another precision differ
            self._latents = LatentCache(self._latents.max_items)
            self._latents_for = made_for
        return self._pipe

    def _load_components(self) -> dict[str, Any]:
        from diffusers import AutoencoderKL

        from pipelines.engines.musetalk import audio as mt_audio
        from pipelines.engines.musetalk.unet import load_unet

        paths = self.weights.paths
        try:
            unet = load_unet(paths["unet"], paths.get("unet_config"))
        except ValueError as exc:
            raise InputError(paths["unet"], "unet", str(exc)) from None
        vae = AutoencoderKL.from_pretrained(
            str(paths["vae"]), local_files_only=True, low_cpu_mem_usage=False
        ).eval()
        try:
            whisper = mt_audio.load_encoder(paths["whisper"])
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(paths["whisper"], "whisper", str(exc)) from None
        return {
            "unet": unet,
            "vae": vae,
            "whisper": whisper,
            "feature_extractor": mt_audio.feature_extractor(paths["whisper"]),
        }

    # ---- prepare ----------------------------------------------------------------------------------------------
    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache):
        return self.preview.prepare(persona, settings, cache)

    def frame_size(self, prepared) -> tuple[int, int]:
        return self.preview.frame_size(prepared)

    def face_point(self, prepared) -> tuple[float, float] | None:
        return self.preview.face_point(prepared)  # the preview's framing (QC measures the person there)

    # ---- render -----------------------------------------------------------------------------------------------
    def render(
        self,
        prepared,
        speech: Speech,
        expression: ExpressionTrack,
        settings: RenderSettings,
        progress: Progress | None = None,
        start: int = 0,
    ) -> Iterator[Frame]:

        from pipelines.engines.musetalk import audio as mt_audio

        opts = settings.engine
        n = speech.n_frames
        if expression.n_frames != n:
            raise RenderError(f"expression track has {expression.n_frames} frames, the speech {n}")
        if not 0 <= start <= n:
            raise ValueError(f"start {start} outside 0..{n}")
        batch = int(self.batch_size or getattr(opts, "batch_size", BATCH_SIZE) or BATCH_SIZE)
        pipe = self.pipeline(str(getattr(opts, "dtype", "auto")))
        encoder, extractor = self._audio
        clock = StageClock(sync=self.profile)
        windows = mt_audio.AudioWindows(
            encoder, extractor, at_16k(speech.decoded_samples, speech.sample_rate), settings.fps
        )
        seed = DEFAULT_SEED if settings.seed is None else int(settings.seed)
        grid = chunks_from(start, n, batch)
        first = grid[0] * batch if len(grid) else n
        # the preview engine moves the persona; the mouth stays shut there (the speech is silenced) for MuseTalk
        silent = dataclasses.replace(
            speech, samples=np.zeros_like(speech.samples), decoded=None, phonemes=(), words=()
        )
        frames = self.preview.render(prepared, silent, expression, settings, start=first)
        source = _ChunkSource(self, prepared, frames, windows, clock, batch, n, settings.loop)
        chunks = Prefetch(source.make, grid, self.prefetch, name="musetalk-prefetch")
        latents = self._latents
        before = (latents.encoded, latents.reused)
        self.stats = {"stages": clock.seconds}
        # silent stretches keep the preview's closed mouth (silence.py); None: MuseTalk's mouth on every frame
        closed = mt_silence.closed_weights(speech) if getattr(opts, "close_in_silence", True) else None
        if closed is not None:
            self.stats["closed_in_silence"] = {
                "frames_closed": int((closed[start:] >= 1.0).sum()),
                "frames_faded": int(((closed[start:] > 0.0) & (closed[start:] < 1.0)).sum()),
            }
        try:
            yield from self._frames(pipe, chunks, seed, start, clock, progress, closed)
        finally:
            source.close()
        self.stats.update(
            {
                "prefetch_wait_s": chunks.waited,
                "audio_segments_encoded": windows.segments_encoded,
                "reference_latents": {
                    "encoded": latents.encoded - before[0],
                    "reused": latents.reused - before[1],
                    "held": len(latents),
                },
            }
        )

    def _frames(self, pipe, chunks, seed, start, clock, progress, closed=None) -> Iterator[Frame]:
        import torch

        done = 0
        for chunk in chunks:
            out = list(chunk.images)
            if chunk.faces:
                generator = chunk_generator(seed, chunk.index)
                with torch.no_grad():
                    with clock("vae-encode"):
                        masked, reference = self._encodings(pipe, chunk, generator)
                    with clock("unet"):
                        predicted = pipe.denoise(masked, reference, chunk.windows)
                    with clock("vae-decode"):
                        faces = pipe.decode(predicted)
                        faces = ((faces.float() + 1.0) * 127.5).round().clamp(0, 255)
                        faces = faces.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                with clock("paste-back"):
                    for j, pos in enumerate(chunk.faces):
                        weight = chunk.weights[pos]
                        if closed is not None:
                            weight *= 1.0 - float(closed[chunk.frames[pos]])
                        if weight <= 0.0:
                            continue  # the preview's frame as it is: its mouth is closed
                        alpha, region = chunk.masks[j]
                        out[pos] = mt_crop.paste(out[pos], faces[j], chunk.boxes[j], alpha, region, weight)
            for pos, i in enumerate(chunk.frames):
                if i >= start:
                    done += 1
                    yield Frame(out[pos], chunk.found[pos])
            if progress is not None:
                progress(done)

    def _encodings(self, pipe, chunk: _Chunk, generator):
        """Scaled (masked, reference) latents of the chunk's crops; distributions come from the cache when the same
        crop was encoded before, each new crop is encoded on its own (so reuse gives the frames a fresh encode
        gives), and the samples are drawn for the whole chunk from its generator."""
        import torch

        p = next(pipe.unet.parameters())
        dists = []
        for crop_rgb, key in zip(chunk.crops, chunk.keys, strict=True):
            value = self._latents.get(key)
            if value is None:
                x = torch.from_numpy(crop_rgb).permute(2, 0, 1)[None].to(p.device).float() / 127.5 - 1.0
                value = (*pipe.encode(pipe.masked(x)), *pipe.encode(x))
                self._latents.encoded += 1
                self._latents.put(key, value)
            else:
                self._latents.reused += 1
            dists.append(value)
        mean_m, std_m, mean_r, std_r = (torch.cat([d[k] for d in dists]) for k in range(4))
        return pipe.sample(mean_m, std_m, generator), pipe.sample(mean_r, std_r, generator)


class _ChunkSource:
    """Makes chunks in order on one thread: preview frames, meshes, boxes, masks, crops and audio windows."""

    def __init__(
        self,
        engine: MuseTalkEngine,
        prepared,
        frames: Iterator[Frame],
        windows,
        clock,
        batch,
        n,
        loop="pingpong",
    ):
        self.engine = engine
        self.loop = (
            loop  # the persona's: must match how the preview engine's frames go on past the source's end
        )
        self.prepared = prepared
        self.frames = frames
        self.windows = windows
        self.clock = clock
        self.batch = batch
        self.n = n
        self.detector = None
        self.video = None
        self.source_meshes: dict[int, np.ndarray] | None = None  # a video persona's, by source frame
        if prepared.kind == "video":
            from pipelines.engines.preview.engine import FADE_FRAMES as PREVIEW_FADE
            from pipelines.face.blend import passthrough_crossfade
            from pipelines.media.video_in import open_source

            self.source = open_source(prepared.source, prepared.fps, prepared.size)
            n_src = min(len(self.source), prepared.n_source)
            self.video = (n_src, passthrough_crossfade(prepared.found[:n_src], PREVIEW_FADE))

    def _mesh(self, i: int, image: np.ndarray, found: bool) -> tuple[np.ndarray | None, float]:
        """(478, 2) mesh points of output frame i, fitted on a crop around the face (see crop.py: the box is
        calibrated on such fits), and the regenerated face's weight (0: pass through)."""
        from pipelines.face.landmarks import LandmarkDetector

        if self.detector is None:
            # image mode: each frame on its own, so a resumed render finds the same meshes as a full one
            self.detector = LandmarkDetector("image", max_faces=4)  # a group photo: the persona's is picked
        if self.video is not None:
            n_src, weights = self.video
            j = loop_frame(i, n_src, self.loop)
            if not self.prepared.found[j]:
                return None, 0.0
            if self.source_meshes is None:
                self.source_meshes = self._source_meshes(i)
            return self.source_meshes[j], float(weights[j])
        if not found:
            return None, 0.0
        faces = self.detector.detect(image)
        if not faces:
            return None, 0.0
        # the persona's face (its pick of a group photo): the one where the preview put it, not another's
        face = face_at(faces, tuple(self.prepared.points[0].mean(axis=0) - self.prepared.margin))
        return self.detector.refit(image, face).points, 1.0

    def _source_meshes(self, first: int) -> dict[int, np.ndarray]:
        """The face track's mesh of each source frame that output frames first..n show, fitted again on a crop
        around the face in the source frame itself: once per source frame however often the loop shows it
        (a mesh pass per output frame cost more than the preview frames), and the same whichever frame a render
        starts at."""
        from pipelines.face.landmarks import FaceLandmarks

        n_src, _ = self.video
        found = self.prepared.found
        wanted = {loop_frame(i, n_src, self.loop) for i in range(first, self.n)}
        wanted = {j for j in wanted if found[j]}
        out: dict[int, np.ndarray] = {}
        if not wanted:
            return out
        for j, frame in enumerate(self.source.frames(0, max(wanted) + 1)):
            if j in wanted:
                tracked = np.asarray(self.prepared.points[j], np.float32)
                out[j] = self.detector.refit(
                    frame, FaceLandmarks(tracked, np.zeros(len(tracked), np.float32))
                ).points
        return out

    def close(self) -> None:
        """Release the landmark detector (a MediaPipe graph) and stop the preview's frame generator."""
        if self.detector is not None:
            self.detector.close()
            self.detector = None
        try:
            self.frames.close()
        except ValueError:  # still running on the prefetch thread (a render stopped early): it ends with it
            pass

    def make(self, c: int) -> _Chunk:
        import torch

        idx = chunk_frames(c, self.batch, self.n)
        res = self.engine.resolution
        with self.clock("preview"):
            got = [next(self.frames) for _ in idx]
        images = [f.image for f in got]
        found = [bool(f.face_found) for f in got]
        faces, boxes, masks, weights, crops, keys = [], [], [], [], [], []
        with self.clock("crop"):
            for pos, (i, image) in enumerate(zip(idx, images, strict=True)):
                points, weight = self._mesh(i, image, found[pos])
                weights.append(weight)
                if points is None or weight <= 0.0:
                    continue
                box = mt_crop.face_box(np.asarray(points, np.float64), image.shape[:2])
                if not box.ok:
                    continue
                faces.append(pos)
                boxes.append(box)
                masks.append(mt_crop.blend_mask(np.asarray(points, np.float64), box, image.shape[:2]))
                cropped = mt_crop.crop(image, box, res)
                crops.append(cropped)
                keys.append(_crop_key(cropped, self.engine))
        with self.clock("audio"):
            windows = self.windows([idx[p] for p in faces]) if faces else None
        crops_arr = np.stack(crops) if crops else np.zeros((0, res, res, 3), np.uint8)
        if windows is not None and self.engine.device != "cpu":
            windows = windows.to(torch.device(self.engine.device))
        return _Chunk(c, idx, images, found, faces, boxes, masks, weights, crops_arr, keys, windows)


def _crop_key(crop: np.ndarray, engine: MuseTalkEngine) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{engine._latents_for}|{crop.shape}".encode())
    h.update(np.ascontiguousarray(crop).tobytes())
    return h.hexdigest()
