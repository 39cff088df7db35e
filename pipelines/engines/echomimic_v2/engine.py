"""Engines "echomimic-v2" (30 steps, CFG 2.5) and "echomimic-v2-acc" (accelerated weights: 6 steps, no CFG):
a half-body presenter animated from the persona photo, the speech and a hand-pose track.

prepare (cached in the ArrayCache): the persona's photo (a video's first frame) framed to the output size around
the body, and what MediaPipe sees in it (shoulders, elbows, wrists, hands). The persona's recorded hand poses
(persona.poses) are read as they are.
render: the hand track for the clip (the recorded one aligned to the photo's body and looped, or generated rest
poses), the ReferenceNet's features of the photo (once per photo, device and dtype), whisper windows of the speech,
then overlapping segments (pipelines.engines.echomimic_v2.segments) through EchoMimicV2Pipeline, cross-faded where
they meet. EchoMimic V2 has no expression input: the emotion track only livens generated rest poses where it
is expressive.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.engines.base import ArrayCache, Frame, Progress, RenderSettings
from pipelines.engines.model.clock import StageClock
from pipelines.engines.model.device import default_device, place_modules, resolve_dtype
from pipelines.engines.model.weights import EngineWeights
from pipelines.errors import InputError
from pipelines.expression.track import ExpressionTrack
from pipelines.speech.track import Speech

# 2: a group photo's persona is the picked (else the largest) face's person; 3: where that face is (face_at, for QC)
PREPARE_VERSION = 3
SEGMENT_FRAMES = 72  # 3 s at 24 fps; memory is set by this, not by the clip length
SEGMENT_OVERLAP = 12
DECODE_BATCH = 4  # frames per VAE decode call (upstream: 1, to save memory; the decoder treats frames alone)
LOOP_FADE_SECONDS = 0.5  # a recorded gesture track returns to its start over this long
DEFAULTS = {
    "echomimic-v2": (30, 2.5),
    "echomimic-v2-acc": (6, 1.0),
}  # steps, guidance (infer.py, infer_acc.py)


@dataclass
class EchoMimicV2Prepared:
    image: np.ndarray  # (H, W, 3) uint8: the photo framed to the output size
    body: Any  # pipelines.poses.extract.Body | None
    photo_points: np.ndarray  # (2, 21, 2) hands found in the framed photo
    photo_scores: np.ndarray  # (2, 21)
    recorded: Any  # pipelines.poses.track.HandPoses | None (persona.poses)
    key: str  # content key of the framed photo (the reference features' cache key)
    face_point: tuple[float, float] | None = None  # the picked face's centre in the frame (fractions), for QC


class EchoMimicV2Engine:
    """EchoMimic V2 on diffusers.

    Options: device (default: cuda when available), weights_dir / lock_path (where pipelines.weights finds the
    converted files), components (ready modules: vae, reference_net, denoiser, pose_encoder, audio_encoder; skips
    the weights folder), resolution (square output side when the job sets no size; 768 as upstream —
    TALKREEL_ECHOMIMIC_V2_RESOLUTION sets it for tests with tiny weights), segment_frames / segment_overlap,
    profile (time stages with device synchronisation; `stats` after a render, for bench/).
    """

    def __init__(
        self,
        engine_id: str,
        device: str | None = None,
        weights_dir: str | Path | None = None,
        lock_path: str | Path | None = None,
        components: dict[str, Any] | None = None,
        resolution: int | None = None,
        segment_frames: int = SEGMENT_FRAMES,
        segment_overlap: int = SEGMENT_OVERLAP,
        profile: bool = False,
    ):
        from pipelines.engines.echomimic_v2.configs import MAX_CONTEXT, RESOLUTION
        from pipelines.engines.echomimic_v2.sampling import CONTEXT_FRAMES

        if engine_id not in DEFAULTS:
            raise ValueError(f"unknown EchoMimic V2 engine {engine_id!r}; known: {', '.join(DEFAULTS)}")
        if not CONTEXT_FRAMES <= segment_frames or not 0 <= segment_overlap < segment_frames // 2:
            raise ValueError(
                f"segments need >= {CONTEXT_FRAMES} frames and an overlap under half of them, "
                f"got {segment_frames} / {segment_overlap}"
            )
        assert CONTEXT_FRAMES <= MAX_CONTEXT
        self.name = engine_id
        resolution = resolution or int(os.environ.get("TALKREEL_ECHOMIMIC_V2_RESOLUTION", "0") or 0)
        self.resolution = int(resolution or RESOLUTION)
        if self.resolution <= 0 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {self.resolution}")
        self.device = default_device(device)
        self.segment_frames = int(segment_frames)
        self.segment_overlap = int(segment_overlap)
        self.profile = bool(profile)
        self.stats: dict[str, Any] = {}
        self._pipe = None
        self._encoder = None
        self._banks: dict[tuple[str, str, str], Any] = {}
        self.weights = EngineWeights(engine_id, weights_dir, lock_path, components)

    @classmethod
    def full(cls, **options: Any) -> EchoMimicV2Engine:
        return cls("echomimic-v2", **options)

    @classmethod
    def acc(cls, **options: Any) -> EchoMimicV2Engine:
        return cls("echomimic-v2-acc", **options)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "device": self.device,
            "resolution": self.resolution,
            "segment_frames": self.segment_frames,
            "segment_overlap": self.segment_overlap,
        }
        info.update(self.weights.describe())
        return info

    # ---- models -----------------------------------------------------------------------------------------------
    def pipeline(self, dtype_name: str = "auto"):
        """The EchoMimicV2Pipeline with this engine's weights (loaded once, then moved/cast as asked)."""
        from pipelines.engines.echomimic_v2.pipeline import EchoMimicV2Pipeline
        from pipelines.engines.echomimic_v2.sampling import make_scheduler

        dtype = resolve_dtype(dtype_name, self.device)
        if self._pipe is None:
            comps = dict(self.weights.components or self._load_components())
            self._encoder = comps.pop("audio_encoder")
            comps.setdefault("scheduler", make_scheduler())
            self._pipe = EchoMimicV2Pipeline(**comps)
        pipe = self._pipe
        place_modules((pipe.vae, pipe.reference_net, pipe.denoiser, pipe.pose_encoder), self.device, dtype)
        place_modules((self._encoder,), self.device, dtype)
        return pipe

    def _load_components(self) -> dict[str, Any]:
        from diffusers import AutoencoderKL

        from pipelines.audio_features.encoder import load_encoder
        from pipelines.engines.echomimic_v2 import checkpoints as ck

        p = self.weights.paths

        def checked(role: str, load):
            try:
                return load()
            except ck.CheckpointMismatchError as exc:
                raise InputError(p[role], role, str(exc)) from None

        base = checked("reference_unet_config", lambda: ck.read_unet_config(p["reference_unet_config"]))
        denoiser = checked(
            "denoising_unet",
            lambda: ck.load_denoiser(
                ck.read_state_dict(p["denoising_unet"]), ck.read_state_dict(p["motion_module"]), base
            ),
        )
        reference = checked(
            "reference_unet", lambda: ck.load_reference_net(ck.read_state_dict(p["reference_unet"]), base)
        )
        pose = checked("pose_encoder", lambda: ck.load_pose_encoder(ck.read_state_dict(p["pose_encoder"])))
        vae = AutoencoderKL.from_pretrained(
            str(p["vae"]), local_files_only=True, low_cpu_mem_usage=False
        ).eval()
        try:
            encoder = load_encoder(p["whisper"], dims_path=p.get("whisper_dims"))
        except ValueError as exc:
            raise InputError(p["whisper"], "whisper", str(exc)) from None
        return {
            "vae": vae,
            "reference_net": reference,
            "denoiser": denoiser,
            "pose_encoder": pose,
            "audio_encoder": encoder,
        }

    # ---- prepare ----------------------------------------------------------------------------------------------
    def output_size(self, settings: RenderSettings) -> tuple[int, int]:
        """(width, height): the job's size rounded down to the VAE's multiple of 8, else the square default."""
        if settings.size:
            w, h = settings.size
            return max(8, int(w) // 8 * 8), max(8, int(h) // 8 * 8)
        return self.resolution, self.resolution

    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache) -> EchoMimicV2Prepared:
        from pipelines.cache import sha256_file
        from pipelines.face.pick import pick_key
        from pipelines.poses.extract import Body
        from pipelines.poses.track import HandPoses

        source = Path(persona.source)
        if not source.is_file():
            raise InputError(source, "source", "file not found")
        size = self.output_size(settings)
        pick = getattr(persona, "face", None)  # the persona's face of several (None: the largest)
        key = hashlib.sha256(
            f"{PREPARE_VERSION}|{sha256_file(source)}|{size}{pick_key(pick)}".encode()
        ).hexdigest()[:32]
        arrays = cache.get_or_compute("echomimic-v2", key, lambda: _frame_persona(source, size, pick))
        body = None
        if arrays["body_found"]:
            body = Body(
                arrays["shoulders"],
                arrays["elbows"],
                arrays["wrists"],
                arrays["visibility"],
                size[0] / size[1],
            )
        poses_path = getattr(persona, "poses", None)
        recorded = HandPoses.load(Path(poses_path)) if poses_path else None
        at = arrays.get("face_at")  # absent when the photo shows no face
        return EchoMimicV2Prepared(
            arrays["image"],
            body,
            arrays["hand_points"],
            arrays["hand_scores"],
            recorded,
            key,
            None if at is None else (float(at[0]), float(at[1])),
        )

    def frame_size(self, prepared: EchoMimicV2Prepared) -> tuple[int, int]:
        h, w = prepared.image.shape[:2]
        return (w, h)

    def face_point(self, prepared: EchoMimicV2Prepared) -> tuple[float, float] | None:
        """Where the picked person's face is in the framed photo (QC measures that person; None: no pick)."""
        return prepared.face_point

    def hand_track(
        self,
        prepared: EchoMimicV2Prepared,
        n_frames: int,
        fps: float,
        seed: int,
        emphasis: np.ndarray | None = None,
    ):
        """The clip's hand poses, in the framed photo's fractions: the recorded track aligned to the photo's body
        and looped, or rest poses generated at the photo's hands (livelier where `emphasis` is high)."""
        from pipelines.poses.rest import rest_poses

        h, w = prepared.image.shape[:2]
        if prepared.recorded is None:
            body, points, scores = prepared.body, prepared.photo_points, prepared.photo_scores
            return rest_poses(n_frames, fps, seed, body, points, scores, w / h, emphasis)
        anchor = prepared.body.anchor if prepared.body is not None else None
        track = prepared.recorded.aligned(anchor, w / h).at_fps(fps)
        return track.looped(n_frames, fade=round(LOOP_FADE_SECONDS * fps))

    # ---- render -----------------------------------------------------------------------------------------------
    def render(
        self,
        prepared: EchoMimicV2Prepared,
        speech: Speech,
        expression: ExpressionTrack,
        settings: RenderSettings,
        progress: Progress | None = None,
        start: int = 0,
    ) -> Iterator[Frame]:
        import torch

        from pipelines.audio_features.features import SpeechFeatures
        from pipelines.audio_features.rate import at_16k
        from pipelines.engines.echomimic_v2.pipeline import NOISE_CLAMP
        from pipelines.engines.echomimic_v2.segments import SegmentPlan, blend, crossfade_weights, frame_noise
        from pipelines.poses.draw import draw_hands

        opts = settings.engine
        steps_default, guidance_default = DEFAULTS[self.name]
        steps = int(getattr(opts, "steps", None) or steps_default)
        guidance = float(getattr(opts, "guidance", None) or guidance_default)
        n = speech.n_frames
        fps = settings.fps
        seed = int(settings.seed) if settings.seed is not None else 3407  # upstream's default seed
        pipe = self.pipeline(getattr(opts, "dtype", "auto"))
        clock = StageClock(sync=self.profile)
        self.stats = {"stages": clock.seconds, "segments": 0}
        h, w = prepared.image.shape[:2]
        from pipelines.expression.track import PARAMS
        from pipelines.poses.rest import emphasis_from_expression

        emphasis = None
        if expression.n_frames == n:  # the emotion track's expressive moments liven the generated rest poses
            emphasis = emphasis_from_expression(expression.values, PARAMS, fps)
        track = self.hand_track(prepared, n, fps, seed, emphasis)
        with clock("reference"):
            bank = self._bank(pipe, prepared)
        with clock("features"):  # from the speech as decoded, as upstream's whisper reads the file
            feats = SpeechFeatures(self._encoder, at_16k(speech.decoded_samples, speech.sample_rate))
        plan = SegmentPlan(n, self.segment_frames, self.segment_overlap)
        fade = crossfade_weights(plan.overlap)
        f = pipe.latent_factor
        tail: list[np.ndarray] = []  # the previous segment's frames shared with this one
        done = 0
        for k in range(plan.first_needed(start), len(plan)):
            idx = plan.frames(k)
            with clock("poses"):
                poses = np.stack([draw_hands(track.points[i], track.scores[i], w, h) for i in idx])
                poses_t = torch.from_numpy(poses).permute(0, 3, 1, 2).float() / 255.0
                pose_features = pipe.encode_poses(poses_t)
            with clock("features"):
                audio = feats.frame_windows(list(idx), fps)
            latents = frame_noise(seed, idx, (pipe.denoiser.config.in_channels, h // f, w // f), NOISE_CLAMP)
            with clock("denoise"):
                latents = pipe.denoise(latents, bank, audio, pose_features, steps, guidance)
            with clock("decode"):
                images = (
                    (pipe.decode(latents, DECODE_BATCH) * 255)
                    .round()
                    .byte()
                    .permute(0, 2, 3, 1)
                    .cpu()
                    .numpy()
                )
            self.stats["segments"] += 1
            last = k == len(plan) - 1
            keep_until = len(idx) if last else len(idx) - plan.overlap
            for j, i in enumerate(idx[:keep_until]):
                frame = images[j]
                if j < len(tail):
                    frame = blend(tail[j], frame, float(fade[j]))
                if i >= start:
                    done += 1
                    yield Frame(image=frame)
            tail = [images[j] for j in range(keep_until, len(idx))]
            if progress is not None:
                progress(done)

    def _bank(self, pipe: Any, prepared: EchoMimicV2Prepared):
        """The ReferenceNet features of the persona photo, kept for the photos of the last two personas."""
        import torch

        unet = pipe.denoiser
        key = (prepared.key, str(unet.device), str(unet.dtype))
        if key not in self._banks:
            image = torch.tensor(prepared.image).permute(2, 0, 1).float() / 127.5 - 1.0
            self._banks[key] = pipe.reference_bank(pipe.encode_reference(image))
            while len(self._banks) > 2:
                self._banks.pop(next(iter(self._banks)))
        return self._banks[key]


def _frame_persona(source: Path, size: tuple[int, int], pick: Any = None) -> dict[str, np.ndarray]:
    """The photo cropped to the output's aspect around the body and resized, and what MediaPipe finds in it.
    In a group photo the persona is the person of the picked face (the persona's `face`, else the largest): the
    crop is centred on them and their body and hands are looked for only in their part of the picture."""
    from PIL import Image

    from pipelines.face.landmarks import detect_faces
    from pipelines.face.pick import persona_face
    from pipelines.media.video_in import open_source
    from pipelines.poses.extract import photo_landmarks

    src = open_source(source, 25.0)
    image = next(iter(src.frames(0, 1)))
    face = None
    if pick is not None or len(detect_faces(image)) > 1:  # BlazePose alone sees one person, not always ours
        face = persona_face(image, pick, source)
        if face is None:
            raise InputError(source, "face", "no face found in the persona image")
    body, _, _ = photo_landmarks(image) if face is None else _person_landmarks(image, face)
    ih, iw = image.shape[:2]
    w, h = size
    # the largest crop with the output's aspect, centred on the shoulders when they are seen
    cw, ch = (iw, round(iw * h / w)) if iw * h <= ih * w else (round(ih * w / h), ih)
    cx = iw / 2 if face is None else float(face.centre[0])
    cx = cx if body is None or body.anchor is None else float(body.anchor[0]) * iw
    x0 = int(np.clip(round(cx - cw / 2), 0, iw - cw))
    y0 = (ih - ch) // 2
    framed = np.asarray(Image.fromarray(image[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.LANCZOS))
    if face is None:
        body, points, scores = photo_landmarks(framed)
    else:  # the persona's face where the crop put it
        from pipelines.face.pick import face_at

        at = ((face.centre[0] - x0) * w / cw, (face.centre[1] - y0) * h / ch)
        faces = detect_faces(framed)
        again = face_at(faces, at) if faces else None
        body, points, scores = photo_landmarks(framed) if again is None else _person_landmarks(framed, again)
    out = {
        "image": np.ascontiguousarray(framed),
        "hand_points": points,
        "hand_scores": scores,
        "body_found": np.array(body is not None),
    }
    if body is not None:
        out.update(
            shoulders=body.shoulders, elbows=body.elbows, wrists=body.wrists, visibility=body.visibility
        )
    if face is not None:
        out["face_at"] = np.array([at[0] / w, at[1] / h], np.float32)
    return out


PERSON_HALF_WIDTH = (
    2.5  # x face width: a person's shoulders, elbows and hands at rest, either side of the face
)


def _person_landmarks(image: np.ndarray, face: Any):
    """photo_landmarks of the person whose face is `face`, in fractions of the whole image: looked for in a band
    of columns around the face that stops halfway to any other face (BlazePose sees one person per picture)."""
    from pipelines.face.landmarks import detect_faces
    from pipelines.poses.extract import Body, photo_landmarks

    iw = image.shape[1]
    cx, reach = float(face.centre[0]), PERSON_HALF_WIDTH * face.width
    x0, x1 = cx - reach, cx + reach
    for other in detect_faces(image):
        ox = float(other.centre[0])
        if abs(ox - cx) > 0.5 * face.width:  # (the face itself is at cx)
            x0, x1 = (max(x0, (cx + ox) / 2), x1) if ox < cx else (x0, min(x1, (cx + ox) / 2))
    x0, x1 = int(max(0, np.floor(x0))), int(min(iw, np.ceil(x1)))
    body, points, scores = photo_landmarks(np.ascontiguousarray(image[:, x0:x1]))

    def to_image(xy: np.ndarray) -> np.ndarray:
        out = np.array(xy, np.float32)
        out[..., 0] = (x0 + out[..., 0] * (x1 - x0)) / iw
        return out

    seen = scores > 0
    points = np.where(seen[..., None], to_image(points), points).astype(np.float32)
    if body is not None:
        body = Body(
            to_image(body.shoulders),
            to_image(body.elbows),
            to_image(body.wrists),
            body.visibility,
            image.shape[1] / image.shape[0],
        )
    return body, points, scores
