"""Engines "echomimic-v3-flash" and "echomimic-v3-preview": the persona's photo speaks, at any length.

prepare (cached): the persona's photo (a video persona: its first frame) at the output size (aspect kept, area at
most 768², sides multiples of 16; a job size is the bound instead), and the MediaPipe face box (preview's audio
mask; upstream uses RetinaFace).

render: the clip is cut into chunks of at most `chunk_frames` (81 flash, 113 preview) that overlap by `overlap`
frames; a chunk starts where the prompt changes (`chunks.plan_overlapping`: the whole clip's plan, made before the
first chunk, so a resume makes the same chunks). EVERY chunk is generated from the persona's own photo (upstream
re-anchors each chunk on the previous chunk's last frames, which drifts to a smear within a minute), with its own
seed (chunk_generator(seed, c)), its own audio (wav2vec2 on the chunk's speech plus a second of context either
side), and its own prompt: the job prompt plus the words of the emotion most of the chunk's frames show.
Consecutive chunks are cross-faded linearly over the overlap (upstream's mix). Memory holds one chunk and the
previous chunk's overlap frames, whatever the length; `render(start=k)` regenerates the chunk holding k (and the
ones before while k is in a cross-fade) and gives the frames of an uninterrupted render.

Prompt embeddings are cached on disk (key: prompt + text-encoder file hash), so the 5.7 B-parameter UMT5 encoder
is loaded, on the CPU, only when a prompt is new, and released afterwards.

Flash skips transformer calls with upstream's TeaCache unless `teacache: false` (pipeline.py, teacache.py);
`low_vram` offloads the models block by block and tiles the VAE (`pipeline()`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.audio_features.rate import at_16k
from pipelines.cache import sha256_file
from pipelines.engines.base import ArrayCache, Frame, Progress, RenderSettings
from pipelines.engines.model.chunks import chunk_generator, first_overlapping, plan_overlapping
from pipelines.engines.model.clock import StageClock
from pipelines.engines.model.device import default_device, resolve_dtype
from pipelines.engines.model.emotion import dominant_emotions
from pipelines.engines.model.weights import EngineWeights
from pipelines.errors import InputError, RenderError
from pipelines.expression.track import ExpressionTrack
from pipelines.speech.track import Speech

PREPARE_VERSION = "echomimic-v3-prepare-2"  # 2: the persona's face pick (the largest by default)
CHUNK_FRAMES = {
    "flash": 81,
    "preview": 113,
}  # infer_flash.py's 81-frame clip; infer_preview.py's partial length
AUDIO_CONTEXT_S = 1.0  # speech either side of a chunk that wav2vec2 also hears (preview)
FPS = 25
DEFAULT_SEED = 43  # infer_preview.py / run_flash.sh
# infer_preview.py's negative prompt (its English part)
PREVIEW_NEGATIVE = (
    "Gesture is bad. Gesture is unclear. Strange and twisted hands. Bad hands. Bad fingers. "
    "Unclear and blurry hands."
)
# words the prompt gets for each built-in emotion (a persona's engine settings may replace or add to them)
EMOTION_WORDS = {
    "neutral": "",
    "happy": "The person is happy, smiling warmly while talking.",
    "sad": "The person is sad, with a downcast look and a soft voice.",
    "angry": "The person is angry, frowning and speaking firmly.",
    "surprised": "The person is surprised, eyebrows raised and eyes wide open.",
    "thinking": "The person is thoughtful, looking slightly aside while thinking.",
}


@dataclass
class EchoMimicV3Prepared:
    image: np.ndarray  # (H, W, 3) uint8 at the output size
    box: (
        tuple[float, float, float, float] | None
    )  # face (x1, y1, x2, y2) in image pixels, None = no face found
    emotion_vectors: dict[str, np.ndarray]
    source_is_video: bool


class EchoMimicV3Engine:
    """EchoMimic V3 flash / preview on EchoMimicV3Pipeline.

    Options: device (default cuda when available), weights_dir / lock_path (pipelines.weights), components (ready
    modules: transformer, vae, image_encoder, audio (Wav2Vec2Features), and tokenizer + text_encoder or
    load_text_encoder; skips the weights folder), prompt_cache_dir (default: the talkreel cache), profile.
    """

    def __init__(
        self,
        engine_id: str,
        device: str | None = None,
        weights_dir: str | Path | None = None,
        lock_path: str | Path | None = None,
        components: dict[str, Any] | None = None,
        prompt_cache_dir: str | Path | None = None,
        profile: bool = False,
    ):
        variants = {"echomimic-v3-flash": "flash", "echomimic-v3-preview": "preview"}
        if engine_id not in variants:
            raise ValueError(f"unknown EchoMimic V3 engine {engine_id!r}; known: {', '.join(variants)}")
        self.name = engine_id
        self.variant = variants[engine_id]
        self.device = default_device(device)
        self.profile = bool(profile)
        self.stats: dict[str, Any] = {}
        self.weights = EngineWeights(engine_id, weights_dir, lock_path, components)
        if prompt_cache_dir is None:
            from pipelines.cache import default_cache_root

            prompt_cache_dir = default_cache_root() / "echomimic-v3-prompts"
        self._prompt_dir = Path(prompt_cache_dir)
        self._pipe = None
        self._placement: tuple[Any, bool] | None = None  # (dtype, low_vram) the models are placed for
        self._audio = None
        self._image_tokens: dict[str, Any] = {}

    @classmethod
    def flash(cls, **options: Any) -> EchoMimicV3Engine:
        return cls("echomimic-v3-flash", **options)

    @classmethod
    def preview(cls, **options: Any) -> EchoMimicV3Engine:
        return cls("echomimic-v3-preview", **options)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"device": self.device, "variant": self.variant}
        info.update(self.weights.describe())
        if self._placement is not None:
            info["offload_idle_modules"] = self._placement[1]
        return info

    # ---- models -------------------------------------------------------------------------------------------------
    def pipeline(self, dtype_name: str = "auto", low_vram: bool = False):
        """The pipeline with its models placed for `dtype_name`; `low_vram`: they wait on the CPU and visit the device
        block by block (diffusers' group offloading, without side streams: TeaCache skips whole block runs, which
        stream prefetching that follows the first call's order was not checked against on a GPU), and the VAE
        works in tiles."""
        import torch

        from pipelines.engines.echomimic_v3.pipeline import EchoMimicV3Pipeline
        from pipelines.engines.echomimic_v3.schedulers import flash_scheduler, preview_scheduler
        from pipelines.engines.model.offload import disable_offload, enable_offload

        # upstream runs in bfloat16 on a GPU (float16 overflows in Wan's attention)
        cuda = str(self.device).startswith("cuda")
        dtype = resolve_dtype("bfloat16" if dtype_name == "auto" and cuda else dtype_name, self.device)
        if self._pipe is None:
            comps = self.weights.components or self._load_components()
            scheduler = flash_scheduler() if self.variant == "flash" else preview_scheduler()
            self._pipe = EchoMimicV3Pipeline(
                comps["transformer"], comps["vae"], scheduler, comps["image_encoder"]
            )
            self._audio = comps["audio"]
            self._pipe.set_progress_bar_config(disable=True)  # an engine never prints
        pipe = self._pipe
        device = torch.device(self.device)
        if self._placement != (dtype, low_vram):
            if self._placement is not None and self._placement[1]:
                disable_offload(pipe)
            home = torch.device("cpu") if low_vram else device
            _place(pipe.transformer, home, dtype)
            _place(pipe.image_encoder, home, dtype)
            # the Wan VAE stays in float32: a small part of the cost
            _place(pipe.vae, home, torch.float32)
            if low_vram:
                enable_offload(pipe, device, "group", use_stream=False)
            self._placement = (dtype, low_vram)
        if low_vram:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()
        # wav2vec2 in float32 on the device in both modes (upstream's audio features are float32; ~0.4 GB)
        _place(self._audio.model, device, torch.float32)
        return pipe

    def _read(self, role: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.weights.paths[role]))

    def _load_components(self) -> dict[str, Any]:
        import json

        from pipelines.engines.echomimic_v3.audio import Wav2Vec2Features
        from pipelines.engines.echomimic_v3.encoders import (
            EncoderCheckpointError,
            clip_vision_encoder,
            wan_vae,
        )
        from pipelines.engines.echomimic_v3.transformer import (
            CheckpointMismatchError,
            build_transformer,
            load_native_weights,
        )

        config = json.loads(Path(self.weights.paths["transformer_config"]).read_text())
        try:
            transformer = build_transformer(self.variant, wan_config(config), device="meta")
            load_native_weights(transformer, self._read("transformer"), assign=True)
        except CheckpointMismatchError as exc:
            raise InputError(self.weights.paths["transformer"], "transformer", str(exc)) from None
        try:
            vae = wan_vae(self._read("vae"), vae_config(self._read("vae")))
            image_encoder = clip_vision_encoder(
                self._read("image_encoder"), clip_heads(self._read("image_encoder"))
            )
        except EncoderCheckpointError as exc:
            raise InputError(self.weights.paths["vae"].parent, "vae / image_encoder", str(exc)) from None
        audio = Wav2Vec2Features.from_folder(self.weights.paths["audio_encoder"])
        return {"transformer": transformer.eval(), "vae": vae, "image_encoder": image_encoder, "audio": audio}

    def _text_encoder(self):
        """(tokenizer, UMT5 encoder) on the CPU, for prompts not in the cache (released by the caller)."""
        if self.weights.components is not None:
            return self.weights.components["load_text_encoder"]()
        from transformers import AutoTokenizer

        from pipelines.engines.echomimic_v3.encoders import umt5_encoder

        tokenizer = AutoTokenizer.from_pretrained(str(self.weights.paths["text_tokenizer"]))
        return tokenizer, umt5_encoder(self._read("text_encoder"), t5_heads(self._read("text_encoder")))

    def _text_revision(self) -> str:
        if self.weights.components is not None:
            return str(self.weights.components.get("text_revision", "components"))
        return sha256_file(self.weights.paths["text_encoder"])

    # ---- prepare ------------------------------------------------------------------------------------------------
    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache) -> EchoMimicV3Prepared:
        from pipelines.expression.build import emotion_table
        from pipelines.face.pick import persona_face, pick_key
        from pipelines.media.video_in import open_source

        path = Path(persona.source)
        if not path.is_file():
            raise InputError(path, "source", "file not found")
        size = tuple(settings.size) if settings.size else None
        pick = getattr(persona, "face", None)  # the persona's face of several (None: the largest)
        key = hashlib.sha256(
            f"{PREPARE_VERSION}|{sha256_file(path)}|{size}{pick_key(pick)}".encode()
        ).hexdigest()[:32]

        def compute() -> dict[str, np.ndarray]:
            from PIL import Image

            from pipelines.engines.echomimic_v3.conditioning import sample_size

            src = open_source(path, settings.fps)
            first = next(src.frames(0, 1))
            w, h = size or (first.shape[1], first.shape[0])
            out_h, out_w = sample_size(int(w), int(h))
            image = np.asarray(Image.fromarray(first).resize((out_w, out_h), Image.Resampling.LANCZOS))
            face = persona_face(image, pick, path)
            box = np.full(4, np.nan, np.float32)
            if face is not None:
                pts = face.points
                box = np.array([*pts.min(axis=0), *pts.max(axis=0)], np.float32)
            return {"image": image, "box": box, "video": np.array([not src.is_still])}

        arrays = cache.get_or_compute("echomimic-v3", key, compute)
        box = arrays["box"]
        return EchoMimicV3Prepared(
            image=arrays["image"],
            box=None if np.isnan(box).any() else tuple(float(v) for v in box),
            emotion_vectors=emotion_table(getattr(persona, "emotions", None) or {}),
            source_is_video=bool(arrays["video"][0]),
        )

    def frame_size(self, prepared: EchoMimicV3Prepared) -> tuple[int, int]:
        return (int(prepared.image.shape[1]), int(prepared.image.shape[0]))

    # ---- render -------------------------------------------------------------------------------------------------
    def prompts_for(self, opts: Any, emotion: str) -> str:
        words = {**EMOTION_WORDS, **(getattr(opts, "emotion_prompts", None) or {})}.get(emotion, "")
        return " ".join(p for p in (getattr(opts, "prompt", "") or "", words) if p).strip()

    def render(
        self,
        prepared: EchoMimicV3Prepared,
        speech: Speech,
        expression: ExpressionTrack,
        settings: RenderSettings,
        progress: Progress | None = None,
        start: int = 0,
    ) -> Iterator[Frame]:

        from pipelines.engines.echomimic_v3.audio import loudness_normalised
        from pipelines.engines.echomimic_v3.conditioning import (
            PromptCache,
            clip_image_tokens,
            face_mask,
            pad_prompt_embeds,
        )
        from pipelines.engines.echomimic_v3.pipeline import to_model_image

        opts = settings.engine
        n = speech.n_frames
        if expression.n_frames != n:
            raise RenderError(f"expression track has {expression.n_frames} frames, speech {n}")
        fps = float(settings.fps)
        if abs(fps - FPS) > 1e-6:
            raise RenderError(
                f"{self.name} renders at {FPS} fps (the rate its audio windows and motion were trained at), "
                f"the job asks for {fps:g}: set output.fps: {FPS}"
            )
        length = int(getattr(opts, "chunk_frames", None) or CHUNK_FRAMES[self.variant])
        overlap = int(getattr(opts, "overlap", 8))
        seed = DEFAULT_SEED if settings.seed is None else int(settings.seed)
        clock = StageClock(sync=self.profile)
        pipe = self.pipeline(getattr(opts, "dtype", "auto"), bool(getattr(opts, "low_vram", False)))
        pipe.stage_timer = clock

        # the speech as decoded (before talkreel's loudness normalisation), as upstream reads its audio file
        samples = at_16k(speech.decoded_samples, speech.sample_rate)
        if self.variant == "flash":
            samples = loudness_normalised(samples)  # infer_flash.py: -23 LUFS before wav2vec2

        # one prompt per chunk: chunks start where the prompt changes (when far enough apart), and each takes the
        # job prompt plus the words of its majority emotion. The plan is the whole clip's, so a resume keeps it.
        names = dominant_emotions(expression.values, prepared.emotion_vectors)
        prompt_of = {e: self.prompts_for(opts, e) for e in set(names)}
        per_frame = [prompt_of[e] for e in names]
        changes = [i for i in range(1, n) if per_frame[i] != per_frame[i - 1]]
        plan = plan_overlapping(n, length, overlap, changes)
        chunk_ids = range(first_overlapping(plan, start, overlap), len(plan))
        prompts = {c: Counter(per_frame[plan[c][0] : sum(plan[c])]).most_common(1)[0][0] for c in chunk_ids}
        negative = getattr(opts, "negative_prompt", None)
        negative = PREVIEW_NEGATIVE if negative is None else negative
        with clock("text"):
            cache = PromptCache(self._prompt_dir, self._text_revision())
            texts = list(
                dict.fromkeys([*prompts.values(), *([negative] if self.variant == "preview" else [])])
            )
            embeds = dict(zip(texts, cache.embeddings(texts, self._text_encoder), strict=True))

        image = to_model_image(prepared.image)
        key = hashlib.sha256(prepared.image.tobytes()).hexdigest()
        with clock("image"):
            if key not in self._image_tokens:
                self._image_tokens = {
                    key: clip_image_tokens(
                        pipe.image_encoder, image.to(self.device, pipe.image_encoder.dtype)
                    )
                }
        mask = None
        if self.variant == "preview":
            h, w = prepared.image.shape[:2]
            box = prepared.box or (0.0, 0.0, float(w), float(h))  # no face found: the audio acts everywhere
            mask = face_mask(box, (w, h), (h, w))
        ramp = np.linspace(0.0, 1.0, overlap, dtype=np.float32)[:, None, None, None]
        self.stats = {
            "stages": clock.seconds,
            "chunks": 0,
            "chunk_sizes": [],
            "chunk_frames": length,
            "overlap": overlap,
            "chunk_starts": [plan[c][0] for c in chunk_ids],
            "chunk_prompts": [prompts[c] for c in chunk_ids],
            "teacache_skipped": 0,
        }

        tail = None  # the previous chunk's last `overlap` frames (float, 0..1)
        done = 0
        for c in chunk_ids:
            a, used = plan[c]
            last = c == len(plan) - 1
            own = used if last else plan[c + 1][0] - a  # the frames before the cross-fade into the next chunk
            size = 4 * -(-(used - 1) // 4) + 1  # the model makes 4k+1 frames: up to 3 more, dropped
            with clock("audio"):
                audio = self._chunk_audio(samples, a, size, fps)
            frames = (
                pipe(
                    image,
                    audio,
                    pad_prompt_embeds([embeds[prompts[c]]]),
                    pad_prompt_embeds([embeds[negative]]) if negative in embeds else None,
                    num_frames=size,
                    num_inference_steps=getattr(opts, "steps", None),
                    guidance_scale=getattr(opts, "guidance", None),
                    audio_guidance_scale=getattr(opts, "audio_guidance", None),
                    face_mask=mask,
                    generator=chunk_generator(seed, c),
                    image_tokens=self._image_tokens[key],
                    teacache=getattr(opts, "teacache", None),
                    teacache_threshold=getattr(opts, "teacache_threshold", None),
                )
                .frames[0]
                .cpu()
                .numpy()
            )
            self.stats["chunks"] += 1
            self.stats["chunk_sizes"].append(size)
            self.stats["teacache_skipped"] += (pipe.teacache_calls or []).count(False)  # transformer calls
            if tail is not None:
                frames[:overlap] = tail * (1 - ramp) + frames[:overlap] * ramp
            tail = frames[own:used].copy()
            emit = frames[:own]
            with clock("color"):
                out = _to_uint8(emit, prepared.image if getattr(opts, "color_match", True) else None)
            for j, img in enumerate(out):
                i = a + j
                if start <= i < n:
                    done += 1
                    yield Frame(image=img, face_found=prepared.box is not None)
            if progress is not None:
                progress(done)

    def _chunk_audio(self, samples: np.ndarray, first: int, length: int, fps: float):
        """The chunk's audio input: preview wav2vec2 features (2 per frame), flash per-frame layer windows."""
        import torch

        from pipelines.engines.echomimic_v3.audio import SAMPLE_RATE, flash_audio_windows

        per_frame = SAMPLE_RATE / fps
        if self.variant == "flash":
            lo, hi = round(first * per_frame), round((first + length) * per_frame)
            piece = _padded(samples, lo, hi)
            states = self._audio.layer_states(piece, length)
            return flash_audio_windows(states)[None]
        context = round(AUDIO_CONTEXT_S * fps)
        left = min(first, context)  # whole frames of speech before the chunk that wav2vec2 hears
        lo = round((first - left) * per_frame)
        hi = round((first + length + context) * per_frame)
        feats = self._audio.last_hidden_state(_padded(samples, lo, hi))
        start = round(left * SAMPLE_RATE / fps / 320)  # the CNN's stride: 320 samples = 20 ms
        out = feats[start : start + 2 * length]
        if out.shape[0] < 2 * length:
            out = torch.cat([out, out.new_zeros(2 * length - out.shape[0], out.shape[1])])
        return out[None]


def _place(module, device, dtype) -> None:
    """Move/cast `module` unless it is already there; modules the class keeps in float32 stay float32 (Wan's norms,
    time embedding and modulation tables, as diffusers' from_pretrained(torch_dtype=...) leaves them)."""
    import torch

    p = next(module.parameters())
    if p.device == device and p.dtype == dtype:
        return
    torch.nn.Module.to(
        module, device=device, dtype=dtype
    )  # the plain cast; the float32 parts are restored below
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    if dtype != torch.float32 and keep:
        with torch.no_grad():
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if any(part in keep for part in name.split(".")) and tensor.is_floating_point():
                    tensor.data = tensor.data.float()


def _padded(samples: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """samples[lo:hi] with silence where the range leaves the speech."""
    out = np.zeros(hi - lo, np.float32)
    a, b = max(lo, 0), min(hi, len(samples))
    if b > a:
        out[a - lo : b - lo] = samples[a:b]
    return out


def _to_uint8(frames: np.ndarray, reference: np.ndarray | None) -> list[np.ndarray]:
    """(F, H, W, 3) floats in 0..1 -> uint8 frames, colour-matched to `reference` in LAB (mean/std) when given."""
    if reference is None:
        return [np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8) for f in frames]
    import cv2

    ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    ref_mean, ref_std = ref.mean(axis=0), ref.std(axis=0)
    out = []
    for f in frames:
        lab = cv2.cvtColor(np.ascontiguousarray(f, np.float32), cv2.COLOR_RGB2LAB)
        flat = lab.reshape(-1, 3)
        lab = (lab - flat.mean(axis=0)) / np.maximum(flat.std(axis=0), 1e-6) * ref_std + ref_mean
        rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
        out.append(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return out


# ---- configs read from the checkpoints ------------------------------------------------------------------------------


def wan_config(native: dict[str, Any]) -> dict[str, Any]:
    """Our transformer config from Wan's native config.json (what the Wan2.1-Fun repo ships)."""
    dim, heads = int(native["dim"]), int(native["num_heads"])
    return {
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": int(native["in_dim"]),
        "out_channels": int(native["out_dim"]),
        "text_dim": int(native["text_dim"]),
        "freq_dim": int(native["freq_dim"]),
        "ffn_dim": int(native["ffn_dim"]),
        "num_layers": int(native["num_layers"]),
        "eps": float(native.get("eps", 1e-6)),
        "added_kv_proj_dim": dim,
        **{
            k: native[k]
            for k in ("image_dim", "audio_dim", "audio_layers", "audio_hidden", "audio_tokens")
            if k in native
        },
    }


def vae_config(sd: dict[str, Any]) -> dict[str, Any]:
    """AutoencoderKLWan widths from its weights. The native file is Wan2.1's (the defaults but for the widths read
    here); a file in diffusers' names also gives its stage widths and blocks per stage (4 stages, as Wan's)."""
    native = "decoder.middle.0.residual.0.gamma" in sd
    conv_in = sd["encoder.conv1.weight" if native else "encoder.conv_in.weight"]
    quant = sd["conv1.weight" if native else "quant_conv.weight"]
    base, z = int(conv_in.shape[0]), int(quant.shape[0]) // 2
    cfg: dict[str, Any] = {"base_dim": base, "z_dim": z}
    if not native:
        resnets = sorted(
            int(k.split(".")[2])
            for k in sd
            if k.startswith("encoder.down_blocks.") and k.endswith(".conv1.weight")
        )
        per_stage = len(resnets) // 4
        widths = [int(sd[f"encoder.down_blocks.{i}.conv1.weight"].shape[0]) for i in resnets]
        cfg.update(num_res_blocks=per_stage, dim_mult=[w // base for w in widths[::per_stage]])
    return cfg


def clip_heads(sd: dict[str, Any]) -> int:
    """ViT-H/14 has 80-wide heads (1280 / 16)."""
    return max(1, int(sd["visual.pos_embedding"].shape[-1]) // 80)


def t5_heads(sd: dict[str, Any]) -> int:
    """The relative-position table has one column per head."""
    return int(sd["blocks.0.pos_embedding.embedding.weight"].shape[1])
