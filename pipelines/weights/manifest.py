"""Every file each engine needs from the model hub, by engine id.

The manifest says *what* an engine needs (hub repo, file patterns, which role each file plays, how a pickled
checkpoint is converted); the lock file (`weights.lock`) says *which exact bytes* (commit, size, sha256).
Sizes here are rough figures from the upstream documentation, used only to show disk needs before a lock exists;
verification always uses the lock's exact size and sha256.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENTSYNC_LICENCE = "openrail++ (ByteDance/LatentSync model card): use restrictions apply, read the card"
SD_VAE_LICENCE = "MIT (stabilityai/sd-vae-ft-mse model card)"
SD_IMAGE_VARIATIONS_LICENCE = "CreativeML OpenRAIL-M (lambdalabs/sd-image-variations-diffusers model card)"
ECHOMIMIC_LICENCE = "no licence tag on the BadToBest model card (code Apache-2.0): check with the authors before commercial use"
WAN_LICENCE = (
    "Apache-2.0 as released for Wan2.1 (not re-checked on the alibaba-pai card: confirm when locking)"
)
WAV2VEC2_LICENCE = "Apache-2.0 (facebook/wav2vec2-base-960h model card)"
CHINESE_WAV2VEC2_LICENCE = (
    "not confirmed here: read the TencentGameMate/chinese-wav2vec2-base card when locking"
)

# Both wordings, because they differ: the hub card's licence tag, and what upstream's README says of the weights.
MUSETALK_LICENCE = (
    "creativeml-openrail-m (TMElyralab/MuseTalk model card tag; use restrictions apply, read the card); "
    "upstream's README: code MIT, 'the model is available for any purpose, even commercially'"
)
WHISPER_HF_LICENCE = "Apache-2.0 (openai/whisper-tiny model card)"

GB = 1_000_000_000
MB = 1_000_000


@dataclass(frozen=True)
class WeightFile:
    """One role an engine's weights play, and the hub files that fill it.

    `patterns` are paths inside the repo (fnmatch globs for folders such as tokenizers). `target` is what
    `resolve()` hands the engine, relative to the repo's local folder: the converted safetensors for a pickled
    checkpoint, the folder for a diffusers/tokenizer folder, else the file itself. `convert` names the converter
    in pipelines.weights.convert (None: the file is used as downloaded).
    """

    role: str
    repo: str
    patterns: tuple[str, ...]
    target: str
    licence: str
    convert: str | None = None
    approx_bytes: int | None = None

    @property
    def is_folder(self) -> bool:
        return len(self.patterns) > 1 or any(ch in p for p in self.patterns for ch in "*?[")


def _latentsync(version: str) -> tuple[WeightFile, ...]:
    repo = f"ByteDance/LatentSync-{version}"
    return (
        WeightFile(
            role="unet",
            repo=repo,
            patterns=("latentsync_unet.pt",),
            target="latentsync_unet.safetensors",
            licence=LATENTSYNC_LICENCE,
            convert="latentsync_unet",
            # 1,267,944,644 fp32 elements (latentsync.md §1).
            approx_bytes=5_072 * MB,
        ),
        WeightFile(
            role="whisper",
            repo=repo,
            patterns=("whisper/tiny.pt",),
            target="whisper/whisper_tiny.safetensors",
            licence=LATENTSYNC_LICENCE + "; whisper itself is MIT (openai/whisper)",
            convert="whisper",
            approx_bytes=75 * MB,
        ),
        _sd_vae(),
    )


def _sd_vae() -> WeightFile:
    # Upstream fetches this VAE silently at run time (LatentSync issue #166); here it is an explicit, pinned file.
    return WeightFile(
        role="vae",
        repo="stabilityai/sd-vae-ft-mse",
        patterns=("config.json", "diffusion_pytorch_model.safetensors"),
        target=".",
        licence=SD_VAE_LICENCE,
        approx_bytes=335 * MB,
    )


def _echomimic_v2(acc: bool) -> tuple[WeightFile, ...]:
    repo = "BadToBest/EchoMimicV2"
    suffix = "_acc" if acc else ""  # the accelerated engine has its own denoiser and motion modules

    def checkpoint(role: str, name: str, approx: int | None) -> WeightFile:
        return WeightFile(
            role=role,
            repo=repo,
            patterns=(f"{name}.pth",),
            target=f"{name}.safetensors",
            licence=ECHOMIMIC_LICENCE,
            convert="state_dict",
            approx_bytes=approx,
        )

    return (
        checkpoint("denoising_unet", f"denoising_unet{suffix}", 1_700 * MB),
        checkpoint("reference_unet", "reference_unet", 1_630 * MB),
        checkpoint("motion_module", f"motion_module{suffix}", 909 * MB),
        checkpoint("pose_encoder", "pose_encoder", None),
        # Only the UNet config is read (the ReferenceNet's architecture); its weights come from reference_unet.pth.
        WeightFile(
            role="reference_unet_config",
            repo="lambdalabs/sd-image-variations-diffusers",
            patterns=("unet/config.json",),
            target="unet/config.json",
            licence=SD_IMAGE_VARIATIONS_LICENCE,
        ),
        _sd_vae(),
        # Upstream takes openai's tiny.pt from openai's own CDN, which is not a hub repo; LatentSync ships the
        # same openai-whisper checkpoint format on the hub, so the pinned, verifiable copy comes from there.
        WeightFile(
            role="whisper",
            repo="ByteDance/LatentSync-1.6",
            patterns=("whisper/tiny.pt",),
            target="whisper/whisper_tiny.safetensors",
            licence=LATENTSYNC_LICENCE + "; whisper itself is MIT (openai/whisper)",
            convert="whisper",
            approx_bytes=75 * MB,
        ),
    )


def _musetalk() -> tuple[WeightFile, ...]:
    repo = "TMElyralab/MuseTalk"
    return (
        WeightFile(
            role="unet",
            repo=repo,
            patterns=("musetalkV15/unet.pth",),
            target="musetalkV15/unet.safetensors",
            licence=MUSETALK_LICENCE,
            convert="state_dict",
            # 849,947,844 fp32 parameters (musetalk_v15_unet_keys.tsv)
            approx_bytes=3_400 * MB,
        ),
        WeightFile(
            role="unet_config",
            repo=repo,
            patterns=("musetalkV15/musetalk.json",),
            target="musetalkV15/musetalk.json",
            licence=MUSETALK_LICENCE,
        ),
        _sd_vae(),
        # transformers' WhisperModel format (upstream's download_weights.sh takes these three files)
        WeightFile(
            role="whisper",
            repo="openai/whisper-tiny",
            patterns=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
            target=".",
            licence=WHISPER_HF_LICENCE,
            convert="state_dict",
            approx_bytes=151 * MB,
        ),
    )


_WAN_BASE = "alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP"


def _echomimic_v3(variant: str) -> tuple[WeightFile, ...]:
    if variant == "flash":
        transformer = WeightFile(
            role="transformer",
            repo="BadToBest/EchoMimicV3",
            patterns=("echomimicv3-flash-pro/diffusion_pytorch_model.safetensors",),
            target="echomimicv3-flash-pro/diffusion_pytorch_model.safetensors",
            licence=ECHOMIMIC_LICENCE,
        )
        audio = WeightFile(
            role="audio_encoder",
            repo="TencentGameMate/chinese-wav2vec2-base",
            patterns=("config.json", "preprocessor_config.json", "pytorch_model.bin"),
            target=".",
            licence=CHINESE_WAV2VEC2_LICENCE,
            convert="state_dict",
        )
    else:
        transformer = WeightFile(
            role="transformer",
            repo="BadToBest/EchoMimicV3",
            patterns=("transformer/diffusion_pytorch_model.safetensors",),
            target="transformer/diffusion_pytorch_model.safetensors",
            licence=ECHOMIMIC_LICENCE,
        )
        audio = WeightFile(
            role="audio_encoder",
            repo="facebook/wav2vec2-base-960h",
            patterns=("config.json", "preprocessor_config.json", "model.safetensors"),
            target=".",
            licence=WAV2VEC2_LICENCE,
        )
    return (
        transformer,
        WeightFile(
            role="transformer_config",
            repo=_WAN_BASE,
            patterns=("config.json",),
            target="config.json",
            licence=WAN_LICENCE,
        ),
        WeightFile(
            role="vae",
            repo=_WAN_BASE,
            patterns=("Wan2.1_VAE.pth",),
            target="Wan2.1_VAE.safetensors",
            licence=WAN_LICENCE,
            convert="state_dict",
        ),
        WeightFile(
            role="text_encoder",
            repo=_WAN_BASE,
            patterns=("models_t5_umt5-xxl-enc-bf16.pth",),
            target="models_t5_umt5-xxl-enc-bf16.safetensors",
            licence=WAN_LICENCE,
            convert="state_dict",
        ),
        WeightFile(
            role="text_tokenizer",
            repo=_WAN_BASE,
            patterns=("google/umt5-xxl/*",),
            target="google/umt5-xxl",
            licence=WAN_LICENCE,
        ),
        WeightFile(
            role="image_encoder",
            repo=_WAN_BASE,
            patterns=("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",),
            target="models_clip_open-clip-xlm-roberta-large-vit-huge-14.safetensors",
            licence=WAN_LICENCE,
            convert="state_dict",
        ),
        WeightFile(
            role="image_tokenizer",
            repo=_WAN_BASE,
            patterns=("xlm-roberta-large/*",),
            target="xlm-roberta-large",
            licence=WAN_LICENCE,
        ),
        audio,
    )


def _syncnet() -> tuple[WeightFile, ...]:
    # LatentSync's StableSyncNet, for `talkreel qc --sync` (not an engine: it scores outputs). The same repo and
    # commit as latentsync-1.6's files.
    return (
        WeightFile(
            role="syncnet",
            repo="ByteDance/LatentSync-1.6",
            patterns=("stable_syncnet.pt",),
            target="stable_syncnet.safetensors",
            licence=LATENTSYNC_LICENCE,
            convert="state_dict",
            # 401,306,080 fp32 elements (pipelines.qc.syncnet.expected_keys()).
            approx_bytes=1_605 * MB,
        ),
    )


MANIFEST: dict[str, tuple[WeightFile, ...]] = {
    "latentsync-1.5": _latentsync("1.5"),
    "latentsync-1.6": _latentsync("1.6"),
    "echomimic-v2": _echomimic_v2(acc=False),
    "echomimic-v2-acc": _echomimic_v2(acc=True),
    "echomimic-v3-flash": _echomimic_v3("flash"),
    "echomimic-v3-preview": _echomimic_v3("preview"),
    "syncnet": _syncnet(),
    "musetalk-1.5": _musetalk(),
}

# InsightFace (buffalo_l), which LatentSync and EchoMimic V3 use upstream for face detection, is NOT listed:
# its model licence is non-commercial. talkreel uses MediaPipe's Apache-2.0 face models instead.


def engine_ids() -> list[str]:
    return list(MANIFEST)


def entries(engine_id: str) -> tuple[WeightFile, ...]:
    """The manifest entries of one engine; an unknown id is an input error naming the known ones."""
    from pipelines.errors import InputError

    try:
        return MANIFEST[engine_id]
    except KeyError:
        raise InputError(
            None, "engine", f"unknown engine {engine_id!r}; expected one of: {', '.join(MANIFEST)}"
        ) from None
