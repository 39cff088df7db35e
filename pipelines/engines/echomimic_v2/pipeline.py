"""EchoMimic V2 sampling as a diffusers pipeline: persona image + audio windows + drawn hand poses -> frames.

One `__call__` renders one clip the way upstream's pipeline does (src/pipelines/pipeline_echomimicv2.py and _acc):
the reference image's VAE latent (distribution mean x 0.18215) through the ReferenceNet once at t=0 (the bank),
pose images through the pose encoder, noise clamped to [-1.5, 1.5], then per step every context window through the
denoiser — with classifier-free guidance as one batch of [zero audio, zero pose, no bank | the conditions] —
predictions averaged where windows overlap, one DDIM step over the clip, and a frame-by-frame VAE decode.

Deviations from upstream, each on purpose:
* `guidance_scale <= 1` divides by the per-frame window count in the full-step mode too (upstream's non-acc
  pipeline forgets to, which breaks it at cfg 1);
* the acc pipeline's "pseudo velocity" round trip (v -> x0 -> v with alpha_prev = 1) is the identity and is skipped;
* the bank keeps the model's dtype (upstream casts it to fp16 whatever the model runs in).
The engine renders long clips as overlapping segments of this call (pipelines.engines.echomimic_v2.segments).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline

from pipelines.engines.echomimic_v2.configs import LATENT_SCALE
from pipelines.engines.echomimic_v2.denoiser import EchoMimicV2UNet
from pipelines.engines.echomimic_v2.pose_encoder import PoseEncoder
from pipelines.engines.echomimic_v2.reference_net import ReferenceBank, ReferenceNet
from pipelines.engines.echomimic_v2.sampling import CONTEXT_FRAMES, CONTEXT_OVERLAP, context_windows

NOISE_CLAMP = 1.5


class EchoMimicV2Pipeline(DiffusionPipeline):
    model_cpu_offload_seq = "reference_net->pose_encoder->denoiser->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        reference_net: ReferenceNet,
        denoiser: EchoMimicV2UNet,
        pose_encoder: PoseEncoder,
        scheduler: DDIMScheduler,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            reference_net=reference_net,
            denoiser=denoiser,
            pose_encoder=pose_encoder,
            scheduler=scheduler,
        )

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    # --- the parts, usable one by one (the engine caches the bank per persona) ---------------------------------

    @torch.no_grad()
    def encode_reference(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or (1, 3, H, W) in [-1, 1] -> (1, 4, H/8, W/8) scaled latent (the distribution's mean)."""
        image = image[None] if image.ndim == 3 else image
        image = image.to(self.vae.device, self.vae.dtype)
        return self.vae.encode(image).latent_dist.mean * LATENT_SCALE

    @torch.no_grad()
    def reference_bank(self, latents: torch.Tensor) -> ReferenceBank:
        net = self.reference_net
        return net.bank(latents.to(net.device, net.dtype))

    @torch.no_grad()
    def encode_poses(self, poses: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1] -> (1, C, F, H/8, W/8) pose features for the denoiser."""
        enc = self.pose_encoder
        feats = enc(poses.to(enc.device, enc.dtype))
        return feats.permute(1, 0, 2, 3)[None]

    def prepare_noise(
        self, n_frames: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Upstream's initial latents: a normal draw (1, 4, F, h, w) clamped to [-1.5, 1.5] (CPU generator)."""
        f = self.latent_factor
        shape = (1, self.denoiser.config.in_channels, n_frames, height // f, width // f)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        return noise.clamp(-NOISE_CLAMP, NOISE_CLAMP) * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        bank: ReferenceBank,
        audio: torch.Tensor,
        pose_features: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        context_frames: int = CONTEXT_FRAMES,
        context_overlap: int = CONTEXT_OVERLAP,
        step_callback: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """The denoising loop over one clip: latents (1, 4, F, h, w), audio (F, T, C), pose features (1, C, F, h, w)."""
        unet = self.denoiser
        device, dtype = unet.device, unet.dtype
        latents = latents.to(device, torch.float32)
        audio = audio.to(device, dtype)
        pose_features = pose_features.to(device, dtype)
        n = latents.shape[2]
        cfg = guidance_scale > 1.0
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        rows = torch.tensor([False, True] if cfg else [True], device=device)
        for i, t in enumerate(self.scheduler.timesteps):
            total = torch.zeros((2 if cfg else 1, *latents.shape[1:]), device=device, dtype=torch.float32)
            count = torch.zeros((1, 1, n, 1, 1), device=device, dtype=torch.float32)
            for window in context_windows(n, i, context_frames, context_overlap):
                idx = torch.tensor(window, device=device)
                x = self.scheduler.scale_model_input(latents[:, :, idx], t).to(dtype)
                a = audio[idx][None]
                p = pose_features[:, :, idx]
                if cfg:
                    x, a, p = (
                        x.repeat(2, 1, 1, 1, 1),
                        torch.cat([torch.zeros_like(a), a]),
                        torch.cat([torch.zeros_like(p), p]),
                    )
                pred = unet(x, t, a, pose=p, reference=bank, reference_rows=rows).sample
                total[:, :, idx] += pred.float()
                count[:, :, idx] += 1
            pred = total / count
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents, eta=0.0).prev_sample
            if step_callback is not None:
                step_callback(i)
        return latents

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch: int = 1) -> torch.Tensor:
        """(1, 4, F, h, w) -> (F, 3, H, W) in [0, 1], `batch` frames per VAE call (upstream: one)."""
        vae = self.vae
        frames = latents[0].permute(1, 0, 2, 3) / LATENT_SCALE
        out = []
        for s in range(0, frames.shape[0], batch):
            image = vae.decode(frames[s : s + batch].to(vae.device, vae.dtype)).sample
            out.append((image.float() / 2 + 0.5).clamp(0, 1))
        return torch.cat(out)

    @torch.no_grad()
    def __call__(
        self,
        reference_image: torch.Tensor,
        audio: torch.Tensor,
        poses: torch.Tensor,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        context_frames: int = CONTEXT_FRAMES,
        context_overlap: int = CONTEXT_OVERLAP,
        output_type: str = "pt",
    ) -> Any:
        """reference_image (3, H, W) in [-1, 1], audio (F, T, C) whisper windows, poses (F, 3, H, W) in [0, 1]
        -> (F, 3, H, W) frames in [0, 1] ("pt") or (F, 4, h, w) latents ("latent")."""
        n, _, height, width = poses.shape
        if audio.shape[0] != n:
            raise ValueError(f"{audio.shape[0]} audio windows for {n} pose frames")
        bank = self.reference_bank(self.encode_reference(reference_image))
        pose_features = self.encode_poses(poses)
        if latents is None:
            latents = self.prepare_noise(n, height, width, generator)
        out = self.denoise(
            latents,
            bank,
            audio,
            pose_features,
            num_inference_steps,
            guidance_scale,
            context_frames,
            context_overlap,
        )
        if output_type == "latent":
            return out
        return self.decode(out)
