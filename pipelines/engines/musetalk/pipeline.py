"""MuseTalkPipeline: one UNet step from 256 x 256 face crops and per-frame audio tokens to regenerated faces.

Upstream (musetalk/models/vae.py, scripts/inference.py): the crop's lower half is blacked out (the image in [0, 1]
times a mask that keeps rows < 128, then normalised, so the masked rows are -1), the masked crop and the whole crop
(the reference: upstream uses the same frame) are each encoded with the VAE (`latent_dist.sample()`, times the
scaling factor) and concatenated to 8 channels; the UNet runs once at timestep 0 with the audio tokens (plus the
positional table) as encoder states, and its output is decoded as the new face. There is no scheduler.

Here the two encodings are split into `encode` (the latent distributions, which an engine may cache by crop
content) and `sample` (drawn from a caller's generator, so a chunk's frames do not depend on earlier chunks).
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline

from pipelines.engines.musetalk.unet import audio_positions

RESOLUTION = 256


class MuseTalkPipeline(DiffusionPipeline):
    def __init__(self, unet, vae):
        super().__init__()
        self.register_modules(unet=unet, vae=vae)

    @staticmethod
    def masked(crops: torch.Tensor) -> torch.Tensor:
        """The crops (F, 3, R, R) in [-1, 1] with the lower half (rows >= R // 2) black, as upstream masks them."""
        out = crops.clone()
        out[:, :, crops.shape[-2] // 2 :, :] = -1.0
        return out

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the VAE's latent distribution of images (F, 3, R, R) in [-1, 1]."""
        vae = self.vae
        dist = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist
        return dist.mean, dist.std

    def sample(
        self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Scaled latents drawn from (mean, std), the noise from `generator` (on the CPU: the same draw on every
        device), as diffusers' DiagonalGaussianDistribution.sample does."""
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32, device="cpu")
        latents = mean + std * noise.to(device=mean.device, dtype=mean.dtype)
        return latents * self.vae.config.scaling_factor

    def tokens(self, windows: torch.Tensor) -> torch.Tensor:
        """Encoder states for the UNet: the audio windows (F, T, C) plus upstream's positional table."""
        table = audio_positions(windows.shape[1], windows.shape[2])
        return windows + table.to(device=windows.device, dtype=windows.dtype)

    @torch.no_grad()
    def denoise(
        self, masked_latents: torch.Tensor, reference_latents: torch.Tensor, audio_windows: torch.Tensor
    ) -> torch.Tensor:
        """The UNet's one step at timestep 0: predicted latents (F, 4, r, r)."""
        unet = self.unet
        x = torch.cat([masked_latents, reference_latents], dim=1).to(device=unet.device, dtype=unet.dtype)
        states = self.tokens(audio_windows.to(device=unet.device, dtype=unet.dtype))
        t = torch.zeros((), device=unet.device, dtype=torch.long)
        return unet(x, t, encoder_hidden_states=states).sample

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (F, 3, R, R) in [-1, 1] from predicted latents."""
        vae = self.vae
        return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample.clamp(-1.0, 1.0)

    def __call__(
        self,
        masked_latents: torch.Tensor,
        reference_latents: torch.Tensor,
        audio_windows: torch.Tensor,
    ) -> torch.Tensor:
        """Regenerated faces (F, 3, R, R) in [-1, 1] from scaled latents (F, 4, r, r) and windows (F, T, C)."""
        return self.decode(self.denoise(masked_latents, reference_latents, audio_windows))

    @torch.no_grad()
    def faces(
        self, crops: torch.Tensor, audio_windows: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The whole step for crops (F, 3, R, R) in [-1, 1]: encode, sample, UNet, decode."""
        masked = self.sample(*self.encode(self.masked(crops)), generator)
        reference = self.sample(*self.encode(crops), generator)
        return self(masked, reference, audio_windows)
