"""LatentSync sampling as a diffusers pipeline: aligned face crops + per-frame audio windows -> regenerated crops.

One `__call__` covers what upstream's pipeline does between face alignment and paste-back (latentsync.md §5, §6.8):
16-frame chunks, one noise draw (1, 4, 1, h, w) shared by every frame, the 13-channel UNet input
[x_t, mask, masked-image latent, reference latent], classifier-free guidance as one batch with all-zero audio as the
unconditional half, DDIM (20 steps -> 951 .. 1), VAE scaling 0.18215, `latent_dist.sample()` for the masked and
reference encodes (drawn from the same generator, in upstream's order), decode, and the composite inside the crop.

`deep_cache_interval` enables the deep-feature cache (latentsync.md §7): steps whose index is a multiple of the
interval run the whole UNet and keep the hidden state entering the last resnet of the last up block; the other
steps run only that resnet, its spatial transformer and motion module, and the output head. Unlike the stock helper
they do not recompute (and discard) the earlier motion modules of that block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline

from pipelines.audio_features.encoder import WhisperAudioEncoder
from pipelines.audio_features.features import encode_speech, frame_windows
from pipelines.engines.latentsync.unet import LatentSyncUNet

VAE_SCALING = 0.18215  # forced, as upstream (shift 0), whatever the VAE's config says
CHUNK_FRAMES = 16
DEFAULT_SEED = 1247

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def make_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SCHEDULER_CONFIG)


@dataclass
class _DeepCache:
    interval: int
    hidden: torch.Tensor | None = None
    full_steps: int = 0
    shallow_steps: int = 0


class LatentSyncPipeline(DiffusionPipeline):
    """unet (LatentSyncUNet), vae (AutoencoderKL, sd-vae-ft-mse), scheduler (DDIM), audio_encoder (whisper tiny)."""

    model_cpu_offload_seq = "audio_encoder->vae->unet->vae"

    def __init__(
        self,
        unet: LatentSyncUNet,
        vae: AutoencoderKL,
        scheduler: DDIMScheduler,
        audio_encoder: WhisperAudioEncoder,
    ):
        super().__init__()
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, audio_encoder=audio_encoder)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # --- audio -----------------------------------------------------------------------------------------------------

    def audio_features(self, samples: np.ndarray, overlap_windows: bool = False) -> torch.Tensor:
        """(T, 5, 384) whisper hidden states of 16 kHz mono speech (see pipelines.audio_features)."""
        return encode_speech(self.audio_encoder, samples, overlap_windows=overlap_windows)

    @staticmethod
    def audio_windows(features: torch.Tensor, frames: range | list[int], fps: float = 25.0) -> torch.Tensor:
        return frame_windows(features, frames, fps)

    # --- latents ---------------------------------------------------------------------------------------------------

    def prepare_noise(self, resolution: int, generator: torch.Generator | None = None, dtype=torch.float32):
        """The single noise draw (1, 4, 1, h, w) every frame of a video starts from."""
        side = resolution // self.vae_scale_factor
        shape = (1, self.vae.config.latent_channels, 1, side, side)
        noise = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32)
        return (noise * self.scheduler.init_noise_sigma).to(dtype)

    def _encode(self, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        dist = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist
        return dist.sample(generator=generator).float() * VAE_SCALING

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        flat = (latents / VAE_SCALING).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        return self.vae.decode(flat.to(self.vae.dtype)).sample.float()

    # --- UNet with the optional deep-feature cache -----------------------------------------------------------------

    def _unet_full(self, x: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, cache: _DeepCache | None):
        if cache is None:
            return self.unet(x, t, encoder_hidden_states=audio).sample
        target = self.unet.up_blocks[-1].resnets[-1]
        skip_channels = self.unet.config.block_out_channels[0]

        def keep(_module, _args, kwargs):
            inp = kwargs["input_tensor"]
            cache.hidden = inp[:, : inp.shape[1] - skip_channels]

        handle = target.register_forward_pre_hook(keep, with_kwargs=True)
        try:
            out = self.unet(x, t, encoder_hidden_states=audio).sample
        finally:
            handle.remove()
        cache.full_steps += 1
        return out

    def _unet_shallow(self, x: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, cache: _DeepCache):
        unet = self.unet
        b, _, f, h, w = x.shape
        unet.set_num_frames(f)
        temb = unet.time_embedding(unet.time_proj(t.expand(b).to(x.device)).to(x.dtype))
        temb = temb.repeat_interleave(f, dim=0)
        sample = unet.conv_in(x.permute(0, 2, 1, 3, 4).reshape(b * f, -1, h, w))
        block = unet.up_blocks[-1]
        hidden = block.resnets[-1](input_tensor=torch.cat([cache.hidden, sample], dim=1), temb=temb)
        hidden = block.attentions[-1](hidden_states=hidden, encoder_hidden_states=audio, return_dict=False)[0]
        hidden = block.motion_modules[-1](hidden, num_frames=f)
        hidden = unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))
        cache.shallow_steps += 1
        return hidden.reshape(b, f, *hidden.shape[1:]).permute(0, 2, 1, 3, 4)

    # --- sampling --------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        faces: np.ndarray | torch.Tensor,
        audio_windows: torch.Tensor,
        mask: np.ndarray | torch.Tensor,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        chunk_frames: int = CHUNK_FRAMES,
        deep_cache_interval: int | None = None,
        output_type: str = "np",
        callback: Any = None,
        sequential_cfg: bool = False,
    ):
        """Regenerate the masked region of aligned face crops.

        faces: (F, R, R, 3) uint8 RGB crops (or (F, 3, R, R) floats in [-1, 1]); audio_windows: (F, 50, C);
        mask: (R, R) with 1 = keep, 0 = regenerate; latents: the shared noise (1, 4, 1, R/8, R/8), drawn from
        `generator` when not given. `sequential_cfg` runs the two guidance halves one after the other (half the
        activation memory, same result: no statistic crosses batch elements). Returns (F, R, R, 3) uint8 (output_type "np") or (F, 3, R, R) in [-1, 1] ("pt").
        """
        pixels = self._pixels(faces)
        n, _, res, _ = pixels.shape
        if audio_windows.shape[0] != n:
            raise ValueError(f"{n} faces but {audio_windows.shape[0]} audio windows")
        if res % self.vae_scale_factor:
            raise ValueError(f"face size {res} is not a multiple of {self.vae_scale_factor}")
        keep = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask, dtype=torch.float32)
        keep = keep.reshape(res, res)
        device, dtype = self.unet.device, self.unet.dtype
        if latents is None:
            latents = self.prepare_noise(res, generator)
        cfg = guidance_scale > 1.0
        self.scheduler.set_timesteps(num_inference_steps)
        outputs = []
        for start in range(0, n, chunk_frames):
            stop = min(start + chunk_frames, n)
            out = self._chunk(
                pixels[start:stop], audio_windows[start:stop], keep, latents, guidance_scale, cfg, generator,
                deep_cache_interval, device, dtype, callback, sequential_cfg,
            )  # fmt: skip
            outputs.append(out)
        result = torch.cat(outputs)
        if output_type == "pt":
            return result
        return ((result / 2 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def _pixels(self, faces: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(faces, np.ndarray) or faces.dtype == torch.uint8:
            arr = torch.as_tensor(np.asarray(faces))
            if arr.ndim != 4 or arr.shape[-1] != 3:
                raise ValueError(f"faces must be (F, R, R, 3) uint8, got {tuple(arr.shape)}")
            return arr.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return faces.float()

    def _chunk(
        self, pixels, audio, keep, noise, g, cfg, generator, interval, device, dtype, callback, sequential
    ):
        f = pixels.shape[0]
        res = pixels.shape[-1]
        side = res // self.vae_scale_factor
        masked = pixels * keep
        mask_lat = F.interpolate(keep[None, None], size=(side, side))  # nearest, as upstream
        # upstream's draw order: masked-image encode, then reference encode
        masked_lat = self._encode(masked, generator)
        ref_lat = self._encode(pixels, generator)

        def frames_first(x):  # (F, C, h, w) -> (1, C, F, h, w)
            return x.permute(1, 0, 2, 3)[None].to(device, dtype)

        cond = torch.cat(
            [frames_first(mask_lat.expand(f, -1, -1, -1)), frames_first(masked_lat), frames_first(ref_lat)],
            dim=1,
        )
        audio = audio.to(device, dtype)
        if cfg:
            cond = torch.cat([cond, cond])
            audio = torch.cat([torch.zeros_like(audio), audio])
        x = noise.to(device, dtype).repeat(1, 1, f, 1, 1)
        halves = 2 if cfg and sequential else 1
        caches = [_DeepCache(interval) if interval else None for _ in range(halves)]
        for j, t in enumerate(self.scheduler.timesteps):
            model_in = torch.cat([x, x]) if cfg else x
            model_in = torch.cat([self.scheduler.scale_model_input(model_in, t), cond], dim=1)
            parts = []
            for cache, inp, aud in zip(caches, model_in.chunk(halves), audio.chunk(halves), strict=True):
                if cache is not None and j % cache.interval != 0 and cache.hidden is not None:
                    parts.append(self._unet_shallow(inp, t, aud, cache))
                else:
                    parts.append(self._unet_full(inp, t, aud, cache))
            eps = torch.cat(parts)
            cache = caches[-1]
            if cfg:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + g * (eps_c - eps_u)
            x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
            if callback is not None:
                callback(j, t, cache)
        decoded = self._decode(x)
        ref = pixels.to(decoded.device)
        return decoded * (1 - keep.to(decoded.device)) + ref * keep.to(decoded.device)
