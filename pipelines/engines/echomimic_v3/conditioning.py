"""What EchoMimic V3's transformer is conditioned on, computed as upstream does it, on stock classes.

* text: UMT5 encoder embeddings of the prompt, cut to the prompt's own tokens, zero-padded to 512. The encoder
  is ~5.7 B parameters, so each distinct prompt is encoded once and kept on disk (`PromptCache`).
* image: CLIP ViT-H vision tower, `hidden_states[-2]` (the first 31 of 32 blocks, 257 tokens), from the
  reference image squashed to 224x224 (bicubic, no centre crop: upstream's preprocessing, not diffusers').
* video: Wan2.1-Fun inpainting input: the reference as frame 0 of an otherwise empty (0 = mid-grey) clip through
  the Wan VAE, plus a 4-channel mask latent that is 1 on the first latent frame (known) and 0 after it.
  Latents are normalised per channel with the VAE's mean/std (upstream's wan_vae does it inside encode/decode).
* size: keep the aspect ratio, area at most 768², sides floored to multiples of 16.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F

TEXT_LEN = 512
MAX_AREA = 768 * 768
CLIP_SIZE = 224
# open-clip's normalisation (the xlm-roberta ViT-H/14 image transforms)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def sample_size(width: int, height: int, max_area: int = MAX_AREA) -> tuple[int, int]:
    """(height, width) of the rendered video for a reference of `width` x `height` (upstream get_sample_size)."""
    if width * height > max_area:
        ratio = math.sqrt(width * height / max_area)
        width, height = width / ratio, height / ratio
    return int(height // 16 * 16), int(width // 16 * 16)


def face_mask(box: tuple[float, float, float, float], image_size: tuple[int, int], size: tuple[int, int]):
    """preview's audio mask: 1 on the 16-px cells of the output inside the face box, 0 elsewhere.

    box (x1, y1, x2, y2) in pixels of the reference image of `image_size` (width, height); `size` = (H, W) of the
    output. The box is scaled by sqrt of the area ratio and floored to cells, as upstream (infer_preview.py).
    Returns (H/16 * W/16,) float, row-major: one weight per transformer token of a latent frame.
    """
    x1, y1, x2, y2 = box
    height, width = size
    ratio = math.sqrt(height * width / (image_size[0] * image_size[1]))
    y1, y2, x1, x2 = (v * ratio // 16 for v in (y1, y2, x1, x2))
    rows = torch.arange(height // 16)[:, None]
    cols = torch.arange(width // 16)[None, :]
    return ((rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)).reshape(-1).float()


# --- latents -------------------------------------------------------------------------------------------------------


def _stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, -1, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


def temporal_ratio(vae) -> int:
    """Video frames per latent frame after the first (4 for the Wan VAE)."""
    return 2 ** sum(vae.config.temperal_downsample)


def spatial_ratio(vae) -> int:
    return 2 ** (len(vae.config.dim_mult) - 1)


def encode_video(vae, video: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1] -> normalised latent means (B, z, T, H/8, W/8)."""
    mu = vae.encode(video.to(vae.dtype)).latent_dist.mode()
    mean, std = _stats(vae, mu)
    return (mu - mean) / std


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents -> (B, 3, F, H, W) in [-1, 1] (clamped, as upstream)."""
    mean, std = _stats(vae, latents)
    return vae.decode((latents * std + mean).to(vae.dtype)).sample.clamp(-1, 1)


def inpaint_condition(vae, reference: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, 3, H, W) reference in [-1, 1] -> (B, 4 + z, T, h, w): mask latents then the masked clip's latents."""
    b, _, h, w = reference.shape
    video = reference.new_zeros(b, 3, num_frames, h, w)
    video[:, :, 0] = reference
    latents = encode_video(vae, video)
    t, lh, lw = latents.shape[2:]
    stride = temporal_ratio(vae)
    # pixel mask: 0 = keep (frame 0), 1 = generate; the first frame stands for a whole latent frame (x stride)
    keep = torch.ones(b, 1, num_frames + stride - 1, h, w, device=latents.device, dtype=torch.float32)
    keep[:, :, :stride] = 0
    keep = keep.view(b, t, stride, h, w).transpose(1, 2)
    known = 1 - keep
    first = F.interpolate(known[:, :, :1], size=(1, lh, lw), mode="trilinear", align_corners=False)
    parts = [first]
    if t > 1:
        parts.append(
            F.interpolate(known[:, :, 1:], size=(t - 1, lh, lw), mode="trilinear", align_corners=False)
        )
    return torch.cat([torch.cat(parts, dim=2).to(latents.dtype), latents], dim=1)


# --- image tokens --------------------------------------------------------------------------------------------------


def clip_image_tokens(image_encoder, image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 257, 1280): the penultimate hidden state of the 224² squashed image."""
    x = F.interpolate(image.float(), size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    x = ((x * 0.5 + 0.5) - mean) / std
    out = image_encoder(pixel_values=x.to(image_encoder.dtype), output_hidden_states=True)
    return out.hidden_states[-2]


# --- text tokens ---------------------------------------------------------------------------------------------------


def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> list[torch.Tensor]:
    """Each prompt's embeddings, cut to its own tokens (with </s>), as upstream's `_get_t5_prompt_embeds`."""
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=TEXT_LEN,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    device = next(text_encoder.parameters()).device
    mask = ids.attention_mask.to(device)
    with torch.no_grad():
        states = text_encoder(ids.input_ids.to(device), attention_mask=mask).last_hidden_state
    return [s[: int(n)] for s, n in zip(states, mask.sum(dim=1), strict=True)]


def pad_prompt_embeds(embeds: list[torch.Tensor]) -> torch.Tensor:
    """Trimmed embeddings -> (B, 512, D) with zeros after each prompt (what the transformer expects)."""
    out = embeds[0].new_zeros(len(embeds), TEXT_LEN, embeds[0].shape[-1])
    for i, e in enumerate(embeds):
        out[i, : e.shape[0]] = e
    return out


class PromptCache:
    """Prompt embeddings on disk, keyed by the prompt and the text encoder's weights revision.

    The encoder then loads only when a prompt is new, and can be released as soon as the prompts are encoded.
    """

    def __init__(self, folder: str | os.PathLike, revision: str):
        self.folder = Path(folder)
        self.revision = revision

    def _path(self, prompt: str) -> Path:
        key = hashlib.sha256(f"{self.revision}\0{prompt}".encode()).hexdigest()
        return self.folder / f"{key}.safetensors"

    def get(self, prompt: str) -> torch.Tensor | None:
        from safetensors.torch import load_file

        path = self._path(prompt)
        return load_file(str(path))["embeds"] if path.is_file() else None

    def put(self, prompt: str, embeds: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(
            {"embeds": embeds.detach().cpu().contiguous()}, str(tmp), metadata={"revision": self.revision}
        )
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    def embeddings(self, prompts: list[str], load_encoder) -> list[torch.Tensor]:
        """Embeddings of `prompts`; `load_encoder()` -> (tokenizer, text_encoder) is called only for missing ones."""
        found = {p: self.get(p) for p in dict.fromkeys(prompts)}
        missing = [p for p, e in found.items() if e is None]
        if missing:
            tokenizer, text_encoder = load_encoder()
            for prompt, embeds in zip(missing, encode_prompts(tokenizer, text_encoder, missing), strict=True):
                self.put(prompt, embeds)
                found[prompt] = embeds.detach().cpu()
        return [found[p] for p in prompts]
