"""Engine settings of a job or a persona: a union discriminated on `name`.

`engine: preview` (a bare name) means that engine with its default settings. This module knows the engines' names
and settings only; it never imports an engine (pipelines.engines.base holds the registry).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, TypeAdapter, model_validator

from pipelines.spec.compose import StrictModel
from pipelines.spec.paths import fail


class PreviewSettings(StrictModel):
    """The CPU preview engine: mesh warps driven by speech and the emotion track."""

    name: Literal["preview"] = "preview"
    idle: float = Field(1.0, ge=0, le=2, description="amplitude of idle head motion and blinks; 0 = still")
    mouth_gain: float = Field(1.0, ge=0, le=3, description="scale of the mouth opening driven by speech")


class LatentSyncSettings(StrictModel):
    """LatentSync 1.5 / 1.6 lip-sync diffusion (GPU)."""

    name: Literal["latentsync-1.5", "latentsync-1.6"]
    steps: int = Field(20, ge=1, le=100, description="denoising steps")
    guidance: float = Field(1.5, ge=1.0, le=5.0, description="classifier-free guidance scale on the audio")
    deep_cache: bool = Field(
        True,
        description="reuse deep UNet features between steps (interval 3: about half the UNet work; on by default "
        "as in upstream's inference.sh and app; false = every step runs the whole UNet)",
    )
    overlap_windows: bool = Field(
        False, description="overlap the 30 s audio-feature windows and cross-fade them (no glitch every 30 s)"
    )
    color_match: bool = Field(
        False, description="match the generated mouth region's colours to the source frame"
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    low_vram: bool = Field(
        False,
        description="fit small GPUs: idle models wait on the CPU, the VAE works one image at a time and the two "
        "guidance halves run one after the other (`talkreel render --low-vram` sets it)",
    )
    vae_tiling: bool = Field(
        False,
        description="VAE in overlapping tiles (less memory at 512 px; tile seams are blended, not exact)",
    )
    compile: bool = Field(
        False,
        description="torch.compile the UNet (minutes of compiling first; pays on long renders on a GPU)",
    )


class EchoMimicV2Settings(StrictModel):
    """EchoMimic V2 half-body presenter with hand gestures (GPU); `-acc` is the accelerated 6-step variant."""

    name: Literal["echomimic-v2", "echomimic-v2-acc"]
    steps: int | None = Field(None, ge=1, le=100, description="denoising steps (default: 30, or 6 for -acc)")
    guidance: float | None = Field(
        None,
        ge=1.0,
        le=10.0,
        description="classifier-free guidance scale (default: 2.5, or 1.0 = off for -acc)",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"


class MuseTalkSettings(StrictModel):
    """MuseTalk 1.5 single-step lip-sync (GPU): the preview engine's motion with MuseTalk's mouth on every frame."""

    name: Literal["musetalk-1.5"]
    idle: float = Field(
        1.0, ge=0, le=2, description="amplitude of idle head motion and blinks on a photo persona; 0 = still"
    )
    batch_size: int = Field(8, ge=1, le=64, description="frames per UNet call")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    close_in_silence: bool = Field(
        True,
        description="keep the mouth closed where the speech is silent (stretches of 0.2 s or more, faded in and "
        "out over 0.12 s): the preview's closed mouth instead of MuseTalk's there; false = MuseTalk's mouth on "
        "every frame, as upstream",
    )


class EchoMimicV3Settings(StrictModel):
    """EchoMimic V3 (Wan2.1-Fun 1.3B): a still portrait speaks, with head motion and expression from the prompt (GPU);
    `-flash` is the 8-step variant, `-preview` the 25-step one with a face-region audio mask."""

    name: Literal["echomimic-v3-flash", "echomimic-v3-preview"]
    steps: int | None = Field(
        None, ge=1, le=100, description="denoising steps (default: 8 flash, 25 preview)"
    )
    guidance: float | None = Field(
        None, ge=1.0, le=10.0, description="text guidance scale, preview only (default 4.0, decaying to half)"
    )
    audio_guidance: float | None = Field(
        None, ge=1.0, le=10.0, description="audio guidance scale (default: 3.0 flash, 2.9 preview)"
    )
    prompt: str = Field(
        "A person is speaking.",
        max_length=1000,
        description="what the clip shows; the emotion words are added",
    )
    negative_prompt: str | None = Field(
        None,
        max_length=1000,
        description="what to avoid (preview only; default: upstream's hand/gesture list)",
    )
    emotion_prompts: dict[str, str] = Field(
        default_factory=dict,
        description="prompt words per emotion, replacing or adding to the built-in ones: {emotion: words}",
    )
    chunk_frames: int | None = Field(
        None, ge=5, le=201, description="frames per generated chunk, 4k+1 (default: 81 flash, 113 preview)"
    )
    overlap: int = Field(8, ge=1, le=32, description="frames two chunks overlap and cross-fade over")
    color_match: bool = Field(
        True, description="match each frame's colours to the persona photo (LAB mean/std)"
    )
    teacache: bool | None = Field(
        None,
        description="TeaCache: skip the transformer on calls whose timestep embedding barely moved (default: on "
        "for flash, as upstream; off for preview); false = every call runs the whole transformer",
    )
    teacache_threshold: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="TeaCache's threshold on the accumulated rescaled change (upstream's 0.1; higher skips more)",
    )
    low_vram: bool = Field(
        False,
        description="fit small GPUs: the models wait on the CPU and visit the GPU block by block, the VAE works in "
        "tiles (seams blended: not the same pixels) (`talkreel render --low-vram` sets it)",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"

    @model_validator(mode="after")
    def _chunk_grid(self) -> EchoMimicV3Settings:
        if self.chunk_frames is not None and (self.chunk_frames - 1) % 4:
            raise fail(f"chunk_frames must be 4k+1 (5, 9, ..., 113), got {self.chunk_frames}")
        if self.chunk_frames is not None and self.overlap >= self.chunk_frames:
            raise fail(f"overlap ({self.overlap}) must be shorter than chunk_frames ({self.chunk_frames})")
        return self


_SETTINGS = (PreviewSettings, LatentSyncSettings, EchoMimicV2Settings, MuseTalkSettings, EchoMimicV3Settings)
ENGINE_NAMES: tuple[str, ...] = tuple(
    name for model in _SETTINGS for name in model.model_fields["name"].annotation.__args__
)


def _bare_name(value: Any) -> Any:
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict) and "name" in value and value["name"] not in ENGINE_NAMES:
        raise fail(f"unknown engine {value['name']!r}; known: {', '.join(ENGINE_NAMES)}")
    if isinstance(value, dict) and "name" not in value:
        raise fail(f"engine needs a name, one of: {', '.join(ENGINE_NAMES)}")
    return value


EngineSettings = Annotated[
    Union[PreviewSettings, LatentSyncSettings, EchoMimicV2Settings, MuseTalkSettings, EchoMimicV3Settings],  # noqa: UP007 -- a discriminated union needs the Union form here
    Field(discriminator="name"),
    BeforeValidator(
        _bare_name,
        json_schema_input_type=Union[  # noqa: UP007
            Literal[ENGINE_NAMES],
            PreviewSettings,
            LatentSyncSettings,
            EchoMimicV2Settings,
            MuseTalkSettings,
            EchoMimicV3Settings,
        ],
    ),
]
"""Settings of one engine: `{name: ..., <settings>}` or just the engine's name."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(EngineSettings)


def engine_settings(
    value: str | dict[str, Any],
) -> PreviewSettings | LatentSyncSettings | EchoMimicV2Settings | MuseTalkSettings | EchoMimicV3Settings:
    """Settings from a name (`render --engine NAME`) or a mapping; raises pydantic.ValidationError when invalid."""
    return _ADAPTER.validate_python(value)
