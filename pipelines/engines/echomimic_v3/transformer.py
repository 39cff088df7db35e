"""The EchoMimic V3 transformer: diffusers' `WanTransformer3DModel` plus the audio cross-attention of each variant.

EchoMimic V3 is Wan2.1-Fun-V1.1-1.3B-InP (image-to-video, 36 input channels, CLIP image tokens) whose
cross-attention also attends to speech. The Wan part maps one to one onto diffusers' class; the audio part
does not fit a processor alone, because diffusers' block forward drops attention kwargs, so this module adds:

* per block, on `attn2`: `k_audio`, `v_audio`, `norm_k_audio` (and, in flash, `q_audio`, which upstream
  defines and loads but whose output it overwrites before use: kept so the checkpoint loads strictly, unused);
* the audio projection at the top: preview `audio2token` (Linear 768 -> dim, no bias, + LayerNorm) applied to
  wav2vec2 features, cut into one 17-token window per latent frame; flash `audio_injection` (the MultiTalk
  projection: 5-frame windows of 12 wav2vec2 layers -> 32 tokens per latent frame);
* the audio output is added to the text and image outputs before `to_out`: each latent frame's image tokens
  attend only to that frame's audio tokens. Preview multiplies it by a face-region mask and `audio_scale`.

Weights load strictly from the native Wan key names of the official checkpoints (`load_native_weights`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan import WanAttention, WanRotaryPosEmbed, WanTransformerBlock
from torch import nn

from pipelines.engines.echomimic_v3.teacache import TeaCache
from pipelines.weights.convert import key_mismatch

Variant = Literal["preview", "flash"]

# Wan2.1-Fun-V1.1-1.3B-InP (echomimic.md "V3"). diffusers has no preset for it, and its single-file detection
# takes any 1536-wide Wan for the text-to-video 1.3B (16 input channels, no image embedder): pass it explicitly.
WAN_FUN_13B_INP_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 36,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": 1280,
    "added_kv_proj_dim": 1536,
    "rope_max_seq_len": 1024,
}

TEXT_TOKENS = (
    512  # prompt embeddings are zero-padded to this length, as upstream and diffusers' Wan pipelines do
)
PREVIEW_WINDOW_EXPAND = (
    4  # extra audio tokens on each side of a latent frame's window (upstream expand_length)
)
FLASH_VAE_STRIDE = 4  # video frames per latent frame after the first


@dataclass
class AudioContext:
    """What one forward's cross-attention needs about the audio.

    tokens: (B * latent_frames, tokens_per_frame, dim) projected audio tokens, one window per latent frame.
    mask: (B, patches_per_frame) weights of each image token's audio output (preview's face region) or None.
    """

    tokens: torch.Tensor
    latent_frames: int
    mask: torch.Tensor | None = None
    scale: float = 1.0


class PreviewAudioProjection(nn.Module):
    """preview `audio2token`: wav2vec2 features -> model width, then LayerNorm."""

    def __init__(self, audio_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(audio_dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features))


class FlashAudioProjection(nn.Module):
    """flash `audio_injection`: per latent frame, a window of wav2vec2 layers -> `context_tokens` tokens.

    The first latent frame sees one video frame's 5-position window; every later latent frame sees the
    8 positions `flash_frame_windows` gathers from its 4 video frames, through its own first layer.
    """

    def __init__(
        self,
        window: int,
        window_later: int,
        layers: int,
        channels: int,
        hidden: int,
        dim: int,
        context_tokens: int,
    ):
        super().__init__()
        self.context_tokens = context_tokens
        self.dim = dim
        self.proj1 = nn.Linear(window * layers * channels, hidden)
        self.proj1_vf = nn.Linear(window_later * layers * channels, hidden)
        self.proj2 = nn.Linear(hidden, hidden)
        self.proj3 = nn.Linear(hidden, context_tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """first (B, 1, w, L, C), later (B, T-1, w', L, C) -> (B, T, context_tokens, dim)."""
        b = first.shape[0]
        h = torch.cat(
            [torch.relu(self.proj1(first.flatten(2))), torch.relu(self.proj1_vf(later.flatten(2)))], dim=1
        )
        h = torch.relu(self.proj2(h))
        tokens = self.proj3(h).unflatten(-1, (self.context_tokens, self.dim))
        return self.norm(tokens).reshape(b, -1, self.context_tokens, self.dim)


def preview_window_ranges(n_tokens: int) -> list[tuple[int, int]]:
    """Inclusive [start, end] audio-token ranges, one per latent frame, before expansion (upstream's grid).

    Upstream assumes 2 tokens per video frame (25 fps, wav2vec2 at 50 Hz) and derives the frame count from the
    token count; the ranges are centred on each latent frame's 4 video frames, the first one ends where the
    second starts. Integer truncation is upstream's.
    """
    n_frames = n_tokens // 2
    per_frame = n_tokens / n_frames
    half = int(per_frame * 4 / 2)
    centres = [0]
    for i in range(1, int((n_frames - 1) / 4) + 1):
        start = per_frame * ((i - 1) * 4 + 1) - 4
        end = per_frame * (i * 4 + 1) + 4
        centres.append(int((start + end) / 2) - 1)
    ranges = [(c - half, c + half) for c in centres]
    ranges[0] = (ranges[1][0] - 2 * half, ranges[1][0])
    return ranges


def preview_audio_windows(tokens: torch.Tensor, expand: int = PREVIEW_WINDOW_EXPAND) -> torch.Tensor:
    """(B, N, D) projected tokens -> (B, T, W, D): each latent frame's window, widened by `expand` per side.

    Positions outside the clip become zero tokens that upstream appends at the END of the window whichever side
    they fell on (it pads after the valid part); attention is order-free except for that count, so it is kept.
    """
    b, n, d = tokens.shape
    padded = torch.cat([tokens, tokens.new_zeros(b, 1, d)], dim=1)
    rows = []
    for start, end in preview_window_ranges(n):
        start, end = start - expand, end + expand
        valid = list(range(max(start, 0), min(end, n - 1) + 1))
        rows.append(valid + [n] * (end - start + 1 - len(valid)))
    index = torch.tensor(rows, device=tokens.device)
    return padded[:, index]


def flash_frame_windows(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F, w, L, C) per-video-frame windows -> first latent frame's (B, 1, w, L, C) and the later ones'.

    Latent frame t >= 1 covers video frames 4t-3..4t: it takes the first frame's window up to the centre, the
    centre of the two middle frames and the last frame's window from the centre on (w//2+1 + 2 + w-w//2 positions).
    """
    b, f, w, layers, c = windows.shape
    if (f - 1) % FLASH_VAE_STRIDE:
        raise ValueError(f"flash audio needs 4k+1 video frames, got {f}")
    mid = w // 2
    groups = windows[:, 1:].reshape(b, (f - 1) // FLASH_VAE_STRIDE, FLASH_VAE_STRIDE, w, layers, c)
    later = torch.cat(
        [
            groups[:, :, 0, : mid + 1],
            groups[:, :, 1:-1, mid],
            groups[:, :, -1, mid:],
        ],
        dim=2,
    )
    return windows[:, :1], later


class AudioCrossAttnProcessor:
    """Wan's image-to-video cross-attention (text + CLIP image tokens) plus per-latent-frame audio attention."""

    _attention_backend = None
    _parallel_config = None

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = dispatch_attention_fn(q, k, v, backend=self._attention_backend)
        return out.flatten(2, 3).type_as(q)

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        audio: AudioContext | None = None,
    ) -> torch.Tensor:
        n_image = encoder_hidden_states.shape[1] - TEXT_TOKENS
        image, text = encoder_hidden_states[:, :n_image], encoder_hidden_states[:, n_image:]
        heads = (attn.heads, -1)

        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, heads)
        key = attn.norm_k(attn.to_k(text)).unflatten(2, heads)
        value = attn.to_v(text).unflatten(2, heads)
        key_img = attn.norm_added_k(attn.add_k_proj(image)).unflatten(2, heads)
        value_img = attn.add_v_proj(image).unflatten(2, heads)

        out = self._attend(query, key, value) + self._attend(query, key_img, value_img)
        if audio is not None:
            b, n = query.shape[:2]
            t = audio.latent_frames
            key_audio = attn.norm_k_audio(attn.k_audio(audio.tokens)).unflatten(2, heads)
            value_audio = attn.v_audio(audio.tokens).unflatten(2, heads)
            # the image tokens of latent frame i attend to frame i's audio window only
            per_frame = query.reshape(b * t, n // t, *query.shape[2:])
            audio_out = self._attend(per_frame, key_audio, value_audio).reshape(b, t, n // t, -1)
            if audio.mask is not None:
                audio_out = audio_out * audio.mask[:, None, :, None].to(audio_out.dtype)
            out = out + audio_out.reshape(b, n, -1) * audio.scale
        return attn.to_out[1](attn.to_out[0](out))


class EchoMimicV3Block(WanTransformerBlock):
    """A Wan block whose cross-attention also takes the audio context (the rest is diffusers' block)."""

    def __init__(
        self, dim: int, ffn_dim: int, num_heads: int, qk_norm, cross_attn_norm, eps, added_kv, variant
    ):
        super().__init__(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps, added_kv)
        flash = variant == "flash"
        if flash:
            self.attn2.q_audio = nn.Linear(
                dim, dim
            )  # in the checkpoint, unused upstream (see module docstring)
        self.attn2.k_audio = nn.Linear(dim, dim, bias=flash)
        self.attn2.v_audio = nn.Linear(dim, dim, bias=flash)
        self.attn2.norm_k_audio = nn.RMSNorm(dim, eps=eps)
        self.attn2.set_processor(AudioCrossAttnProcessor())

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
        audio: AudioContext | None = None,
    ) -> torch.Tensor:
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + temb.float()).chunk(6, dim=1)

        norm = (self.norm1(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = (hidden_states.float() + self.attn1(norm, None, None, rotary_emb) * gate).type_as(
            hidden_states
        )

        norm = self.norm2(hidden_states.float()).type_as(hidden_states)
        hidden_states = hidden_states + self.attn2.processor(self.attn2, norm, encoder_hidden_states, audio)

        norm = (self.norm3(hidden_states.float()) * (1 + c_scale) + c_shift).type_as(hidden_states)
        ff = self.ffn(norm)
        return (hidden_states.float() + ff.float() * c_gate).type_as(hidden_states)


class EchoMimicV3Transformer3DModel(WanTransformer3DModel):
    """Wan2.1-Fun image-to-video transformer with EchoMimic V3's audio cross-attention.

    forward(hidden_states (B, 36, T, h, w), timestep (B,), encoder_hidden_states (B, 512, 4096) text,
            encoder_hidden_states_image (B, 257, 1280) CLIP, audio_embeds, audio_mask, audio_scale)
      audio_embeds: preview (B, 2 * video frames, 768) wav2vec2 features (`audio_mask` (B, h*w/4) face weights);
                    flash (B, video frames, 5, 12, 768) per-frame windows of wav2vec2 layers;
                    None skips the audio attention. That is NOT upstream's "no audio" guidance branch, which feeds
                    zero features (their projection is not zero): the pipelines pass zeros there, as upstream does.
      teacache: a `teacache.TeaCache` of the sampling run: the blocks run only on the calls it does not skip.
    """

    _no_split_modules = ["EchoMimicV3Block"]
    _repeated_blocks = ["EchoMimicV3Block"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 1536,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        variant: Variant = "preview",
        audio_dim: int = 768,
        audio_layers: int = 12,
        audio_window: int = 5,
        audio_hidden: int = 512,
        audio_tokens: int = 32,
    ) -> None:
        if variant not in ("preview", "flash"):
            raise ValueError(f"variant must be 'preview' or 'flash', got {variant!r}")
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=0,  # the blocks are built below, with audio
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        self.register_to_config(num_layers=num_layers)
        dim = num_attention_heads * attention_head_dim
        self.blocks = nn.ModuleList(
            EchoMimicV3Block(
                dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps, added_kv_proj_dim, variant
            )
            for _ in range(num_layers)
        )
        if variant == "preview":
            self.audio2token = PreviewAudioProjection(audio_dim, dim)
        else:
            self.audio_injection = FlashAudioProjection(
                window=audio_window,
                window_later=audio_window + FLASH_VAE_STRIDE - 1,
                layers=audio_layers,
                channels=audio_dim,
                hidden=audio_hidden,
                dim=dim,
                context_tokens=audio_tokens,
            )

    def audio_tokens(self, audio_embeds: torch.Tensor, latent_frames: int) -> torch.Tensor:
        """(B * latent_frames, tokens per frame, dim) audio tokens from the variant's audio input."""
        if self.config.variant == "preview":
            windows = preview_audio_windows(self.audio2token(audio_embeds))
        else:
            windows = self.audio_injection(*flash_frame_windows(audio_embeds))
        if windows.shape[1] != latent_frames:
            raise ValueError(f"audio covers {windows.shape[1]} latent frames, the video has {latent_frames}")
        return windows.flatten(0, 1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        audio_scale: float = 1.0,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        teacache: TeaCache | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        b, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        grid = (frames // p_t, height // p_h, width // p_w)

        rotary_emb = self.rope(hidden_states)
        hidden_states = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        temb, timestep_proj, text, image = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image
        )
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        context = text if image is None else torch.cat([image, text], dim=1)

        audio = None
        if audio_embeds is not None:
            tokens = self.audio_tokens(audio_embeds.to(hidden_states.dtype), grid[0]).to(hidden_states.dtype)
            audio = AudioContext(tokens, grid[0], audio_mask, audio_scale)

        def blocks(hidden_states: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                if torch.is_grad_enabled() and self.gradient_checkpointing:
                    hidden_states = self._gradient_checkpointing_func(
                        block, hidden_states, context, timestep_proj, rotary_emb, audio
                    )
                else:
                    hidden_states = block(hidden_states, context, timestep_proj, rotary_emb, audio)
            return hidden_states

        if teacache is None:
            hidden_states = blocks(hidden_states)
        else:  # upstream measures e0 in the model's dtype
            hidden_states = teacache.run(timestep_proj.to(hidden_states.dtype), hidden_states, blocks)

        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        out = hidden_states.reshape(b, *grid, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = out.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)


def build_transformer(
    variant: Variant, config: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> EchoMimicV3Transformer3DModel:
    """The transformer with the Wan2.1-Fun-1.3B-InP config (or `config` overrides, e.g. tiny) on `device`."""
    cfg = {**WAN_FUN_13B_INP_CONFIG, **(config or {}), "variant": variant}
    with torch.device(device):
        return EchoMimicV3Transformer3DModel(**cfg)


# --- key mapping: native Wan / EchoMimic names <-> this model's names ---------------------------------------------

_TOP = {
    "time_embedding.0.": "condition_embedder.time_embedder.linear_1.",
    "time_embedding.2.": "condition_embedder.time_embedder.linear_2.",
    "text_embedding.0.": "condition_embedder.text_embedder.linear_1.",
    "text_embedding.2.": "condition_embedder.text_embedder.linear_2.",
    "time_projection.1.": "condition_embedder.time_proj.",
    "img_emb.proj.0.": "condition_embedder.image_embedder.norm1.",
    "img_emb.proj.1.": "condition_embedder.image_embedder.ff.net.0.proj.",
    "img_emb.proj.3.": "condition_embedder.image_embedder.ff.net.2.",
    "img_emb.proj.4.": "condition_embedder.image_embedder.norm2.",
    "head.head.": "proj_out.",
    "head.modulation": "scale_shift_table",
}
# inside a block; upstream's affine cross-attention norm is `norm3`, diffusers calls it `norm2` (and the other way)
_BLOCK = {
    "modulation": "scale_shift_table",
    "self_attn.": "attn1.",
    "cross_attn.": "attn2.",
    "norm3.": "norm2.",
    "ffn.0.": "ffn.net.0.proj.",
    "ffn.2.": "ffn.net.2.",
}
_ATTN = {"q.": "to_q.", "k.": "to_k.", "v.": "to_v.", "o.": "to_out.0.", "k_img.": "add_k_proj."}
_ATTN.update({"v_img.": "add_v_proj.", "norm_k_img.": "norm_added_k."})
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.*)$")


def _rename(rest: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    return None


def native_to_diffusers(key: str) -> str:
    """This model's name of a native Wan / EchoMimic checkpoint key (audio keys keep their names)."""
    m = _BLOCK_KEY.match(key)
    if m is None:
        return _rename(key, _TOP) or key
    index, rest = m.groups()
    renamed = _rename(rest, _BLOCK) or rest
    for prefix in ("attn1.", "attn2."):
        if renamed.startswith(prefix):
            renamed = prefix + (_rename(renamed[len(prefix) :], _ATTN) or renamed[len(prefix) :])
    return f"blocks.{index}.{renamed}"


def diffusers_to_native(key: str) -> str:
    """The native checkpoint name of one of this model's keys (inverse of `native_to_diffusers`)."""
    m = _BLOCK_KEY.match(key)
    if m is None:
        return _rename(key, {v: k for k, v in _TOP.items()}) or key
    index, rest = m.groups()
    for prefix, native in (("attn1.", "self_attn."), ("attn2.", "cross_attn.")):
        if rest.startswith(prefix):
            inner = rest[len(prefix) :]
            return f"blocks.{index}.{native}{_rename(inner, {v: k for k, v in _ATTN.items()}) or inner}"
    return f"blocks.{index}.{_rename(rest, {v: k for k, v in _BLOCK.items()}) or rest}"


def native_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the native checkpoint names (what the official safetensors hold)."""
    return {diffusers_to_native(k): v for k, v in model.state_dict().items()}


class CheckpointMismatchError(ValueError):
    """The state dict is not an EchoMimic V3 transformer of this variant and size."""


def load_native_weights(
    model: EchoMimicV3Transformer3DModel, native: Mapping[str, torch.Tensor], assign: bool = False
) -> None:
    """Strictly load a native-named state dict: every key used, none left over, every shape equal."""
    mismatch = key_mismatch(native, {k: tuple(v.shape) for k, v in native_state_dict(model).items()})
    if mismatch:
        variant = model.config.variant
        hint = ""
        other = "audio_injection.proj1.weight" if variant == "preview" else "audio2token.proj.weight"
        if other in native:
            hint = f"; it holds {'flash' if variant == 'preview' else 'preview'} audio weights"
        raise CheckpointMismatchError(f"not an EchoMimic V3 {variant} transformer: {mismatch}{hint}")
    model.load_state_dict({native_to_diffusers(k): v for k, v in native.items()}, strict=True, assign=assign)
    if model.rope.freqs_cos.is_meta:
        # a model built on `meta` keeps its RoPE tables (computed, not stored) there: compute them now
        cfg = model.config
        with torch.device(next(model.parameters()).device):
            model.rope = WanRotaryPosEmbed(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len)


def count_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
