"""`EchoMimicV3Pipeline`: one clip of a still portrait speaking, as upstream's pipeline of each variant samples it.

The variant is the transformer's (`transformer.config.variant`):

* preview: FlowMatchEuler, 25 steps; three branches per step, batched: [negative prompt + zero audio,
  prompt + zero audio, prompt + audio]; noise = u + g (d - u) + a (c - d) with text scale g 4.0 and audio
  scale a 2.9, both decayed towards half their value over the run (upstream's "dynamic cfg"); the negative
  embeddings are multiplied by `neg_scale` (1.5) at each of the first `neg_steps` + 1 steps, compounding;
  the audio output of the transformer is weighted by the face mask.
* flash: UniPC on upstream's 8-step grid; two transformer calls per step, prompt + audio and prompt + zero
  audio; noise = u + a (c - u) with a = 3.0 (no text guidance: upstream passes the negative prompt nowhere).
  TeaCache (`teacache.py`) is on by default, as upstream's infer_flash.py has it: it skips the blocks of 4 to 6
  of the 16 transformer calls of 8 steps.

TeaCache can be turned on for preview too (upstream has the switch, off by default): one call per step there.
`teacache_calls` holds, after a call, whether each transformer call ran its blocks (None: TeaCache off).

Inputs are tensors: the reference image, wav2vec2 features (`pipelines.engines.echomimic_v3.audio`) and prompt
embeddings (`conditioning.encode_prompts` / `PromptCache`); `encode_prompt` is there when a text encoder is loaded.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from pipelines.engines.echomimic_v3.conditioning import (
    clip_image_tokens,
    decode_latents,
    encode_prompts,
    inpaint_condition,
    pad_prompt_embeds,
    spatial_ratio,
    temporal_ratio,
)
from pipelines.engines.echomimic_v3.schedulers import FLASH_STEPS, PREVIEW_STEPS, set_timesteps
from pipelines.engines.echomimic_v3.teacache import THRESHOLD, TeaCache

# infer_preview.py / run_flash.sh defaults
PREVIEW_GUIDANCE = {"guidance_scale": 4.0, "audio_guidance_scale": 2.9, "neg_scale": 1.5, "neg_steps": 2}
FLASH_AUDIO_GUIDANCE = 3.0


def dynamic_scale(scale: float, step: int, steps: int) -> float:
    """Upstream's decaying guidance: `scale` at the first step, falling to about `scale / 2` by the last."""
    return scale / 2 + (scale / 2) * (1 - math.cos(math.pi * ((steps - step) / steps) ** 5.0)) / 2


@dataclass
class EchoMimicV3Output(BaseOutput):
    frames: torch.Tensor  # (B, F, H, W, 3) in [0, 1]; output_type "latent": the latents


class EchoMimicV3Pipeline(DiffusionPipeline):
    """transformer (EchoMimicV3Transformer3DModel), vae (AutoencoderKLWan), scheduler, image_encoder
    (CLIPVisionModel); tokenizer and text_encoder (UMT5EncoderModel) are optional: pass prompt embeddings instead."""

    model_cpu_offload_seq = "text_encoder->image_encoder->transformer->vae"
    _optional_components = ["tokenizer", "text_encoder"]

    def __init__(self, transformer, vae, scheduler, image_encoder, tokenizer=None, text_encoder=None):
        super().__init__()
        self.stage_timer = None  # a pipelines.engines.model.clock.StageClock: seconds per stage (bench/)
        self.teacache_calls: list[bool] | None = None
        self.register_modules(
            transformer=transformer,
            vae=vae,
            scheduler=scheduler,
            image_encoder=image_encoder,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
        )

    def _stage(self, name: str):
        return self.stage_timer(name) if self.stage_timer is not None else contextlib.nullcontext()

    @property
    def variant(self) -> str:
        return self.transformer.config.variant

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("this pipeline has no text encoder: pass prompt_embeds")
        return pad_prompt_embeds(encode_prompts(self.tokenizer, self.text_encoder, prompts))

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        audio_embeds: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        num_frames: int = 81,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        neg_scale: float | None = None,
        neg_steps: int | None = None,
        dynamic_guidance: bool = True,
        face_mask: torch.Tensor | None = None,
        audio_scale: float = 1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
        teacache: bool | None = None,
        teacache_threshold: float | None = None,
        output_type: str = "frames",
        return_dict: bool = True,
    ) -> EchoMimicV3Output | tuple[torch.Tensor]:
        """image (1, 3, H, W) in [-1, 1] at the output size (sides multiples of 16); audio_embeds: preview
        (1, 2 * num_frames, 768) features, flash (1, num_frames, 5, 12, 768) windows; prompt_embeds (1, 512, 4096)
        zero-padded; num_frames 4k+1. image_tokens: precomputed CLIP tokens of the reference (else computed).
        teacache: None = the variant's default (flash on, preview off); teacache_threshold None = upstream's 0.1.
        output_type "latent": the final latents (1, C, T, h, w), not decoded."""
        if output_type not in ("frames", "latent"):
            raise ValueError(f"output_type must be 'frames' or 'latent', got {output_type!r}")
        device = self._execution_device
        dtype = self.transformer.dtype
        ratio_t, ratio_s = temporal_ratio(self.vae), spatial_ratio(self.vae)
        if (num_frames - 1) % ratio_t:
            raise ValueError(f"num_frames must be {ratio_t}k+1, got {num_frames}")
        _, _, height, width = image.shape
        if height % (2 * ratio_s) or width % (2 * ratio_s):
            raise ValueError(f"image sides must be multiples of {2 * ratio_s}, got {width}x{height}")
        preview = self.variant == "preview"
        if preview:
            need = 2 * num_frames
            if audio_embeds.shape[1] < need:
                raise ValueError(
                    f"{num_frames} frames need {need} audio feature vectors, got {audio_embeds.shape[1]}"
                )
            audio_embeds = audio_embeds[:, :need]
        elif audio_embeds.shape[1] != num_frames:
            raise ValueError(
                f"flash needs one audio window per frame: {num_frames}, got {audio_embeds.shape[1]}"
            )

        image = image.to(device)
        with self._stage("vae-encode"):
            condition = inpaint_condition(self.vae, image, num_frames).to(dtype)
        if image_tokens is None:
            with self._stage("clip"):
                image_tokens = clip_image_tokens(self.image_encoder, image)
        image_tokens = image_tokens.to(device, dtype)
        audio = audio_embeds.to(device, dtype)
        text = prompt_embeds.to(device, dtype)

        shape = (1, self.transformer.config.out_channels, *condition.shape[2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        latents = latents.to(device, torch.float32)
        steps = num_inference_steps or (PREVIEW_STEPS if preview else FLASH_STEPS)
        timesteps = set_timesteps(self.scheduler, steps, device)

        if preview:
            g = PREVIEW_GUIDANCE
            scales = (
                guidance_scale if guidance_scale is not None else g["guidance_scale"],
                audio_guidance_scale if audio_guidance_scale is not None else g["audio_guidance_scale"],
            )
            neg_scale = g["neg_scale"] if neg_scale is None else neg_scale
            neg_steps = g["neg_steps"] if neg_steps is None else neg_steps
            if negative_prompt_embeds is None:
                raise ValueError("preview guidance needs negative_prompt_embeds")
            negative = negative_prompt_embeds.to(device, dtype)
            mask = None if face_mask is None else face_mask.to(device, dtype).reshape(1, -1).expand(3, -1)
            audio3 = torch.cat([torch.zeros_like(audio), torch.zeros_like(audio), audio])
        else:
            a_scale = FLASH_AUDIO_GUIDANCE if audio_guidance_scale is None else audio_guidance_scale

        cache = None
        if teacache if teacache is not None else not preview:
            threshold = THRESHOLD if teacache_threshold is None else teacache_threshold
            cache = TeaCache(period=steps, threshold=threshold)  # period: upstream passes the step count
        self.scheduler.set_begin_index(0)
        with self._stage("transformer"):
            for i, t in enumerate(self.progress_bar(timesteps)):
                x = torch.cat([latents.to(dtype), condition], dim=1)
                if preview:
                    if i <= neg_steps:
                        negative = negative * neg_scale  # compounds, as upstream reassigns the scaled list
                    out = self.transformer(
                        x.expand(3, -1, -1, -1, -1),
                        t.expand(3),
                        torch.cat([negative, text, text]),
                        image_tokens.expand(3, -1, -1),
                        audio_embeds=audio3,
                        audio_mask=mask,
                        audio_scale=audio_scale,
                        teacache=cache,
                    ).sample.float()
                    uncond, drop_audio, cond = out.chunk(3)
                    gs, ags = (dynamic_scale(s, i, steps) for s in scales) if dynamic_guidance else scales
                    noise = uncond + gs * (drop_audio - uncond) + ags * (cond - drop_audio)
                else:
                    tt = t.expand(1)
                    cond = self.transformer(
                        x, tt, text, image_tokens, audio_embeds=audio, teacache=cache
                    ).sample.float()
                    uncond = self.transformer(
                        x, tt, text, image_tokens, audio_embeds=torch.zeros_like(audio), teacache=cache
                    ).sample.float()
                    noise = uncond + a_scale * (cond - uncond)
                latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
        self.teacache_calls = None if cache is None else cache.computed

        if output_type == "latent":
            self.maybe_free_model_hooks()
            return EchoMimicV3Output(frames=latents) if return_dict else (latents,)
        with self._stage("vae-decode"):
            video = decode_latents(self.vae, latents.to(self.vae.dtype))
        frames = ((video.float() + 1) / 2).permute(0, 2, 3, 4, 1)
        self.maybe_free_model_hooks()
        return EchoMimicV3Output(frames=frames) if return_dict else (frames,)


def to_model_image(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
