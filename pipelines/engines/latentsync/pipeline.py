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

VAE encodes: each distinct face crop is encoded on its own, masked and unmasked together (a batch of 2), so its
latent distribution does not depend on which other crops share the chunk. With `reference_keys` (one content key per
crop) repeated crops are encoded once per chunk, and with a `LatentCache` once while they stay in the cache; the
distributions' samples are still drawn per frame from the chunk's generator, so a cached and a fresh encode give the
same frames.

Memory options: `offload_idle_modules(device)` keeps the modules on the CPU and moves one of UNet / VAE to the device
when it is needed (the other goes back first), the audio encoder only for its own calls; `vae.use_slicing` and
`vae.use_tiling` are diffusers' VAE options; `sequential_cfg` runs the two guidance halves one after the other.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from pipelines.audio_features.encoder import WhisperAudioEncoder
from pipelines.audio_features.features import encode_speech, frame_windows
from pipelines.engines.latentsync.unet import LatentSyncUNet
from pipelines.engines.model.chunks import CHUNK_FRAMES
from pipelines.engines.model.latent_cache import LatentCache

VAE_SCALING = 0.18215  # forced, as upstream (shift 0), whatever the VAE's config says
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


def pixel_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] pixels -> float 8-bit levels, truncated as upstream's uint8 conversion does."""
    return torch.floor((x / 2 + 0.5).clamp(0, 1) * 255)


@dataclass
class _Capture:
    enabled: bool = False
    hidden: torch.Tensor | None = None


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
        self.stage_timer: Callable[[str], contextlib.AbstractContextManager] | None = None
        self._offload_device: torch.device | None = None
        self._resident: str | None = None
        self._placement_lock = threading.Lock()
        self.module_moves: list[tuple[str, str]] = []  # (module, "on" / "off" the device) while offloading
        self._unet_call: Callable[..., Any] | None = None  # the compiled UNet, when compiled
        self._deep_capture = _Capture()
        self._capture_hook = None

    # --- where modules run -----------------------------------------------------------------------------------------

    @property
    def offloading(self) -> bool:
        return self._offload_device is not None

    @property
    def execution_device(self) -> torch.device:
        return self._offload_device or self.unet.device

    def offload_idle_modules(self, device: str | torch.device | None) -> None:
        """Keep the models on the CPU and bring each to `device` only while it is used (None: switch this off; the
        modules then stay on the CPU until moved). At most one of UNet and VAE is on the device at a time; the
        audio encoder visits the device for its own calls (`placed("audio_encoder")`)."""
        if self._offload_device is not None:
            for name in ("unet", "vae", "audio_encoder"):
                self._move(name, on=False)
        self._offload_device = torch.device(device) if device is not None else None
        self._resident = None

    def _move(self, name: str, on: bool) -> None:
        module = getattr(self, name)
        device = self._offload_device if on and self._offload_device is not None else torch.device("cpu")
        if next(module.parameters()).device != device:
            module.to(device)
        if self._offload_device is not None:
            self.module_moves.append((name, "on" if on else "off"))

    def _use(self, name: str) -> Any:
        """The module, on the execution device (offloading: the other resident module goes to the CPU first)."""
        if self._offload_device is None or self._resident == name:
            return getattr(self, name)
        with self._stage("offload"), self._placement_lock:
            if self._resident is not None:
                self._move(self._resident, on=False)
            self._move(name, on=True)
            self._resident = name
        return getattr(self, name)

    @contextlib.contextmanager
    def placed(self, name: str) -> Iterator[Any]:
        """For modules used outside `__call__` (the audio encoder): on the device inside, back on the CPU after."""
        if self._offload_device is None:
            yield getattr(self, name)
            return
        with self._placement_lock:
            self._move(name, on=True)
        try:
            yield getattr(self, name)
        finally:
            with self._placement_lock:
                self._move(name, on=False)

    def compile_unet(self, enabled: bool = True, **options: Any) -> None:
        """Run full UNet steps through `torch.compile(unet, **options)` (the module and its weights are shared;
        cached deep-feature steps stay eager). `enabled=False` goes back to eager."""
        self._install_capture_hook()
        self._unet_call = torch.compile(self.unet, **options) if enabled else None

    @property
    def unet_compiled(self) -> bool:
        return self._unet_call is not None

    def _stage(self, name: str) -> contextlib.AbstractContextManager:
        return self.stage_timer(name) if self.stage_timer is not None else contextlib.nullcontext()

    # --- audio -----------------------------------------------------------------------------------------------------

    def audio_features(self, samples: np.ndarray, overlap_windows: bool = False) -> torch.Tensor:
        """(T, 5, 384) whisper hidden states of 16 kHz mono speech (see pipelines.audio_features)."""
        with self.placed("audio_encoder") as encoder:
            return encode_speech(encoder, samples, overlap_windows=overlap_windows)

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

    def _moments(
        self,
        pixels: torch.Tensor,
        keep: torch.Tensor,
        keys: Sequence[Hashable | None] | None,
        cache: LatentCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, 8, h, w) latent-distribution parameters of the masked crops and of the crops (see the module doc)."""
        f = pixels.shape[0]
        keys = list(keys) if keys is not None else [None] * f
        if len(keys) != f:
            raise ValueError(f"{f} faces but {len(keys)} reference keys")
        found: dict[Hashable, tuple[torch.Tensor, torch.Tensor]] = {}
        slots = []
        for j, key in enumerate(keys):
            slot = ("frame", j) if key is None else key
            slots.append(slot)
            if slot in found:
                if cache is not None:
                    cache.reused += 1
                continue
            value = cache.get(slot) if cache is not None and key is not None else None
            if value is None:
                vae = self._use("vae")
                crop = pixels[j : j + 1].to(vae.device, vae.dtype)
                with self._stage("vae"):
                    moments = vae.encode(torch.cat([crop * keep.to(crop), crop])).latent_dist.parameters
                value = (moments[0], moments[1])
                if cache is not None:
                    cache.encoded += 1
                    if key is not None:
                        cache.put(slot, value)
            elif cache is not None:
                cache.reused += 1
            found[slot] = value
        masked = torch.stack([found[slot][0] for slot in slots])
        reference = torch.stack([found[slot][1] for slot in slots])
        return masked, reference

    @staticmethod
    def _sample(moments: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return DiagonalGaussianDistribution(moments).sample(generator=generator).float() * VAE_SCALING

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        flat = (latents / VAE_SCALING).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        vae = self._use("vae")
        with self._stage("vae"):
            return vae.decode(flat.to(vae.device, vae.dtype)).sample.float()

    # --- UNet with the optional deep-feature cache -----------------------------------------------------------------

    def _keep_deep_features(self, _module, _args, kwargs) -> None:
        capture = self._deep_capture
        if capture.enabled:
            inp = kwargs["input_tensor"]
            capture.hidden = inp[:, : inp.shape[1] - self.unet.config.block_out_channels[0]]

    def _install_capture_hook(self) -> None:
        # Installed once, before any compile (torch.compile does not notice hooks added later), and switched by a
        # flag on one long-lived object, so a compiled UNet keeps two graphs (capturing or not) instead of
        # re-tracing for every chunk.
        if self._capture_hook is None:
            target = self.unet.up_blocks[-1].resnets[-1]
            self._capture_hook = target.register_forward_pre_hook(self._keep_deep_features, with_kwargs=True)

    def _unet_full(self, x: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, cache: _DeepCache | None):
        self._install_capture_hook()
        unet = self._unet_call if self._unet_call is not None else self.unet
        capture = self._deep_capture
        capture.enabled = cache is not None
        try:
            out = unet(x, t, encoder_hidden_states=audio).sample
        finally:
            capture.enabled = False
        if cache is not None:
            cache.hidden, capture.hidden = capture.hidden, None
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
        reference_keys: Sequence[Hashable | None] | None = None,
        latent_cache: LatentCache | None = None,
    ):
        """Regenerate the masked region of aligned face crops.

        faces: (F, R, R, 3) uint8 RGB crops (or (F, 3, R, R) floats in [-1, 1]); audio_windows: (F, 50, C);
        mask: (R, R) with 1 = keep, 0 = regenerate; latents: the shared noise (1, 4, 1, R/8, R/8), drawn from
        `generator` when not given. `sequential_cfg` runs the two guidance halves one after the other (half the
        activation memory, same result: no statistic crosses batch elements). `reference_keys` (one per face, None =
        unique) and `latent_cache` let repeated crops share one VAE encode (see the module doc).
        Returns (F, R, R, 3) uint8 (output_type "np") or (F, 3, R, R) in [-1, 1] ("pt", on the execution device).
        """
        pixels = self._pixels(faces)
        n, _, res, _ = pixels.shape
        if audio_windows.shape[0] != n:
            raise ValueError(f"{n} faces but {audio_windows.shape[0]} audio windows")
        if res % self.vae_scale_factor:
            raise ValueError(f"face size {res} is not a multiple of {self.vae_scale_factor}")
        keep = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask, dtype=torch.float32)
        keep = keep.reshape(res, res)
        device, dtype = self.execution_device, self.unet.dtype
        if latents is None:
            latents = self.prepare_noise(res, generator)
        cfg = guidance_scale > 1.0
        self.scheduler.set_timesteps(num_inference_steps)
        outputs = []
        keys = list(reference_keys) if reference_keys is not None else [None] * n
        if len(keys) != n:
            raise ValueError(f"{n} faces but {len(keys)} reference keys")
        for start in range(0, n, chunk_frames):
            stop = min(start + chunk_frames, n)
            out = self._chunk(
                pixels[start:stop], audio_windows[start:stop], keep, latents, guidance_scale, cfg, generator,
                deep_cache_interval, device, dtype, callback, sequential_cfg, keys[start:stop], latent_cache,
            )  # fmt: skip
            outputs.append(out)
        result = torch.cat(outputs)
        if output_type == "pt":
            return result
        return pixel_levels(result).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def _pixels(self, faces: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(faces, np.ndarray) or faces.dtype == torch.uint8:
            arr = torch.as_tensor(np.asarray(faces))
            if arr.ndim != 4 or arr.shape[-1] != 3:
                raise ValueError(f"faces must be (F, R, R, 3) uint8, got {tuple(arr.shape)}")
            return arr.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return faces.float()

    def _chunk(
        self, pixels, audio, keep, noise, g, cfg, generator, interval, device, dtype, callback, sequential,
        keys, latent_cache,
    ):  # fmt: skip
        f = pixels.shape[0]
        res = pixels.shape[-1]
        side = res // self.vae_scale_factor
        keep = keep.to(pixels.device)
        mask_lat = F.interpolate(keep[None, None], size=(side, side))  # nearest, as upstream
        masked_moments, ref_moments = self._moments(pixels, keep, keys, latent_cache)
        # upstream's draw order: masked-image sample, then reference sample
        masked_lat = self._sample(masked_moments, generator)
        ref_lat = self._sample(ref_moments, generator)

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
        self._use("unet")
        with self._stage("unet"):
            x = self._denoise(x, cond, audio, caches, halves, cfg, g, callback)
        decoded = self._decode(x)
        ref = pixels.to(decoded.device)
        keep = keep.to(decoded.device)
        return decoded * (1 - keep) + ref * keep

    def _denoise(self, x, cond, audio, caches, halves, cfg, g, callback):
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
        return x
