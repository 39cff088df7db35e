"""EchoMimic V3 speed and memory per stage through the engine itself, with random weights (speed does not depend on
weight values), for two speech lengths: seconds per video frame of each stage, the transformer's achieved TFLOP/s,
peak memory after each length (it must not grow with the length: every chunk is generated on its own).

Stages: audio (wav2vec2 per chunk), text (UMT5, cached per prompt: once), image (CLIP, once per render), vae-encode
(the persona photo as frame 0 of each chunk), transformer (all denoising steps and guidance branches), vae-decode,
color (LAB match and conversion to 8-bit).

Full size (Wan2.1-Fun 1.3B transformer, Wan VAE, CLIP ViT-H/14, wav2vec2-base; the text encoder is a one-layer
UMT5 of the real width, since prompt embeddings are computed once and cached) on a GPU, bf16, 5 s and 60 s:
    python bench/echomimic_speed.py --device cuda --variant flash --seconds 5 60
A small size on CPU (toy widths, 64 px), to check the script and the flat memory:
    python bench/echomimic_speed.py --size tiny --seconds 1 3
The real width with fewer blocks (a CPU can run it at a small photo size; the blocks dominate the transformer):
    python bench/echomimic_speed.py --layers 2 --photo 128 --seconds 3

TeaCache (on by default for flash) is measured on and off side by side (`--teacache on off`, the default; `on` or
`off` alone for one): the transformer's s/frame, the transformer calls it skipped and the ratio. `--low-vram`
renders with the engine's low-VRAM mode (models offloaded block by block, VAE tiles): compare the peak GPU memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "text_dim": 64,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 2,
    "image_dim": 32,
    "added_kv_proj_dim": 32,
    "audio_dim": 32,
    "audio_layers": 3,
    "audio_hidden": 32,
    "audio_tokens": 4,
}


def build(variant: str, tiny: bool, layers: int | None = None) -> dict:
    from diffusers import AutoencoderKLWan
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        UMT5Config,
        UMT5EncoderModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    from pipelines.engines.echomimic_v3.audio import Wav2Vec2Features
    from pipelines.engines.echomimic_v3.transformer import build_transformer

    cfg = {**(TINY if tiny else {}), **({"num_layers": layers} if layers else {})}
    transformer = build_transformer(variant, cfg).eval()
    vae = AutoencoderKLWan(**({"base_dim": 8, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1} if tiny else {}))
    clip = CLIPVisionConfig(
        hidden_size=cfg.get("image_dim", 1280),
        intermediate_size=64 if tiny else 5120,
        num_hidden_layers=2 if tiny else 32,
        num_attention_heads=2 if tiny else 16,
        image_size=224,
        patch_size=14,
        hidden_act="gelu",
    )
    audio = Wav2Vec2Config(
        hidden_size=cfg.get("audio_dim", 768),
        num_hidden_layers=cfg.get("audio_layers", 12),
        **({"num_attention_heads": 2, "intermediate_size": 64, "conv_dim": (16,) * 7} if tiny else {}),
    )
    text = UMT5Config(
        vocab_size=64, d_model=cfg.get("text_dim", 4096), d_kv=16, d_ff=64, num_layers=1, num_heads=4
    )

    def load_text_encoder():
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", eos_token="</s>"
        ), UMT5EncoderModel(text).eval()

    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    return {
        "transformer": transformer,
        "vae": vae.eval(),
        "image_encoder": CLIPVisionModel(clip).eval(),
        "audio": Wav2Vec2Features(Wav2Vec2Model(audio).eval(), extractor),
        "load_text_encoder": load_text_encoder,
        "text_revision": "bench",
    }


def transformer_flops(config, frames: int, height: int, width: int, branches: int) -> float:
    """Multiply-adds x 2 of one denoising step (all guidance branches) of the transformer, from its config."""
    dim = config.num_attention_heads * config.attention_head_dim
    t = (frames - 1) // 4 + 1
    per_frame = (height // 16) * (width // 16)
    n = t * per_frame
    context = 512 + 257
    audio = 17 if config.variant == "preview" else config.audio_tokens
    linear = n * (
        4 * dim * dim + 2 * dim * dim + 2 * dim * config.ffn_dim + 3 * dim * dim
    )  # self, cross q/o, ffn
    linear += context * 4 * dim * dim + t * audio * 2 * dim * dim  # text/image and audio keys and values
    attention = 2 * n * n * dim + 2 * n * context * dim + 2 * n * audio * dim  # QK^T and AV
    return 2.0 * branches * config.num_layers * (linear + attention)


def write_persona(folder: Path, size: int) -> Path:
    from PIL import Image
    from skimage.data import astronaut

    path = folder / "portrait.png"
    Image.fromarray(astronaut()).resize((size, size), Image.Resampling.LANCZOS).save(path)
    return path


def speech(seconds: float):
    from pipelines.speech.track import Speech

    n = int(round(seconds * 25))
    t = np.arange(int(16000 * n / 25)) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return Speech(samples, 16000, 25.0, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=("flash", "preview"), default="flash")
    ap.add_argument("--size", choices=("full", "tiny"), default="full")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--seconds", type=float, nargs="+", default=[5.0, 60.0])
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--chunk-frames", type=int, default=None, help="4k+1 frames per chunk (default 81 / 113)")
    ap.add_argument("--photo", type=int, default=None, help="persona photo side in px (default 768, tiny 64)")
    ap.add_argument("--teacache", choices=("on", "off"), nargs="+", default=["on", "off"])
    ap.add_argument("--low-vram", action="store_true", help="the engine's low_vram mode")
    ap.add_argument("--layers", type=int, default=None, help="transformer blocks (default: 30, tiny 2)")
    args = ap.parse_args()
    tiny = args.size == "tiny"
    cuda = args.device.startswith("cuda")
    if not cuda:
        print(
            "no GPU here: CPU figures only"
            + (
                ""
                if tiny or args.layers
                else " (full size on a CPU takes hours; try --size tiny or --layers 2)"
            )
        )

    from pipelines.cache import DiskArrayCache
    from pipelines.engines.base import RenderSettings, create_engine
    from pipelines.expression.track import ExpressionTrack
    from pipelines.spec.engines import engine_settings

    name = f"echomimic-v3-{args.variant}"
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine = create_engine(
            name,
            device=args.device,
            components=build(args.variant, tiny, args.layers),
            prompt_cache_dir=tmp / "prompts",
            profile=True,
        )
        opts = {"name": name, "dtype": args.dtype, "low_vram": args.low_vram}
        opts.update({"steps": args.steps} if args.steps else {})
        opts.update({"chunk_frames": args.chunk_frames} if args.chunk_frames else {})
        settings = RenderSettings(fps=25, size=None, seed=1, engine=engine_settings(opts))
        persona = SimpleNamespace(source=write_persona(tmp, args.photo or (64 if tiny else 768)), emotions={})
        prepared = engine.prepare(persona, settings, DiskArrayCache(tmp / "cache"))
        w, h = engine.frame_size(prepared)
        config = engine.pipeline(args.dtype, args.low_vram).transformer.config
        print(
            f"{name} {args.size} on {args.device}: {w}x{h}, transformer {config.num_layers} layers"
            + (", low_vram" if args.low_vram else "")
        )
        steps = args.steps or (8 if args.variant == "flash" else 25)
        branches = 2 if args.variant == "flash" else 3
        calls_per_step = 2 if args.variant == "flash" else 1  # preview batches its three branches in one call
        per_frame: dict[tuple[float, str], float] = {}
        # an untimed first render (one second): the first calls pay one-off costs (allocator, kernels, caches)
        warm = speech(1.0)
        for _ in engine.render(prepared, warm, ExpressionTrack.neutral(warm.n_frames), settings):
            pass
        for seconds in args.seconds:
            clip = speech(seconds)
            for teacache in args.teacache:
                run = dataclasses.replace(
                    settings, engine=settings.engine.model_copy(update={"teacache": teacache == "on"})
                )
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                expression = ExpressionTrack.neutral(clip.n_frames)
                n = sum(1 for _ in engine.render(prepared, clip, expression, run))
                wall = time.perf_counter() - start
                stages = dict(engine.stats["stages"])
                sizes = engine.stats["chunk_sizes"]
                calls = steps * calls_per_step * len(sizes)
                skipped = engine.stats["teacache_skipped"]
                print(
                    f"\n{seconds:g} s of speech, TeaCache {teacache}: {n} frames, chunks of {sizes} frames: "
                    f"{wall / n:.3f} s/frame; transformer calls skipped: {skipped} of {calls}"
                )
                for stage, secs in stages.items():
                    print(f"  {stage:12s} {secs / n:8.4f} s/frame")
                per_frame[seconds, teacache] = stages.get("transformer", 0.0) / n
                # a skipped call costs no block FLOPs: count the computed calls only
                flops = steps * sum(transformer_flops(config, size, h, w, branches) for size in sizes)
                flops *= 1 - skipped / calls
                rate = flops / max(stages.get("transformer", 1e-9), 1e-9)
                print(f"  transformer achieved {rate / 1e12:.4f} TFLOP/s ({flops / 1e12:.3f} TFLOP)")
                if cuda:
                    print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                print(f"  peak process RSS so far: {rss:.2f} GiB")
        if len(args.teacache) == 2:
            print(f"\nTeaCache on vs off ({args.device}): transformer s/frame")
            for seconds in args.seconds:
                on, off = per_frame[seconds, "on"], per_frame[seconds, "off"]
                print(f"  {seconds:g} s: on {on:.4f}, off {off:.4f}, off/on {off / max(on, 1e-12):.2f}x")


if __name__ == "__main__":
    main()
