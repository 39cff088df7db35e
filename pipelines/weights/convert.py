"""One-time conversion of pickled hub checkpoints to safetensors, with a strict key/shape check.

Pickles are only ever opened with `torch.load(weights_only=True)` (tensors and plain containers, no code);
engines load the safetensors written here. Each output records the sha256 of the file it came from, so a
conversion runs once per source file and a replaced source is converted again.
Upstream LatentSync loads its UNet with strict=False and silently drops mismatched tensors: here a wrong
file is an error that lists what is missing, unexpected or misshapen.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pipelines.errors import InputError

KINDS = ("latentsync_unet", "whisper", "state_dict")
Shape = tuple[int, ...]

_META_SOURCE = "talkreel_source"
_META_SHA = "talkreel_source_sha256"
_META_CHECKED = "talkreel_keys_checked"


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def is_pickle(path: str) -> bool:
    """Whether a repo file is a pickled torch checkpoint (what gets converted); configs and safetensors are not."""
    return path.lower().endswith(PICKLE_SUFFIXES)


def output_rel(kind: str, source_rel: str) -> str:
    """Where the converted file of a repo path goes, relative to the repo's local folder."""
    src = PurePosixPath(source_rel)
    if kind == "whisper":
        return str(src.with_name("whisper_tiny.safetensors"))
    if src.name == "pytorch_model.bin":  # transformers' own name for the safetensors twin
        return str(src.with_name("model.safetensors"))
    return str(src.with_suffix(".safetensors"))


def whisper_dims_path(converted: Path) -> Path:
    return converted.with_suffix(".json")


def converted_source_sha256(path: Path) -> str | None:
    """The sha256 of the checkpoint a converted file came from (None: not a talkreel conversion / unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # a truncated or foreign file simply counts as not converted
        return None
    return meta.get(_META_SHA)


def convert(
    kind: str,
    source: Path,
    output: Path,
    *,
    source_sha256: str,
    source_repo: str = "",
    expected_keys: Mapping[str, Shape] | None = None,
) -> bool:
    """Convert `source` to `output` unless `output` already came from these exact bytes.

    Returns True when it converted, False when the existing output was current. `expected_keys` (key -> shape)
    makes the check strict for the UNet and plain state dicts; whisper checkpoints are checked against the
    encoder layout their own `dims` imply.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown conversion {kind!r}")
    if output.exists() and converted_source_sha256(output) == source_sha256:
        if kind != "whisper" or whisper_dims_path(output).exists():
            return False

    obj = load_pickle(source)
    extra_files: dict[Path, str] = {}
    if kind == "latentsync_unet":
        state = _state_dict_of(obj, source, field="state_dict", required=True)
    elif kind == "whisper":
        if not isinstance(obj, dict) or "dims" not in obj or "model_state_dict" not in obj:
            raise InputError(
                source, None, "expected an openai-whisper checkpoint with 'dims' and 'model_state_dict'"
            )
        dims = _whisper_dims(obj["dims"], source)
        full = _state_dict_of(obj["model_state_dict"], source, field="model_state_dict", required=False)
        # Only the encoder is used (audio features); the decoder would be dead weight on disk and in memory.
        state = {k: v for k, v in full.items() if k.startswith("encoder.")}
        expected_keys = whisper_encoder_keys(dims)
        extra_files[whisper_dims_path(output)] = json.dumps(dims, indent=2, sort_keys=True) + "\n"
    else:
        state = _state_dict_of(obj, source, field="state_dict", required=False)

    if expected_keys is not None:
        check_keys(state, expected_keys, source)

    _save(
        state,
        output,
        source,
        {
            _META_SOURCE: source.name,
            # The LatentSync loader reads the repo to refuse 1.5 weights in a 1.6 engine and vice versa.
            "source_repo": source_repo,
            _META_SHA: source_sha256,
            _META_CHECKED: "true" if expected_keys is not None else "false",
            "format": "pt",
        },
    )
    for path, text in extra_files.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return True


def key_mismatch(
    state: Mapping[str, Any], expected: Mapping[str, Shape], optional: tuple[str, ...] = ()
) -> str | None:
    """None when `state` holds exactly `expected`'s keys with its shapes (keys ending in one of `optional` may be
    absent); else what differs, with a few keys of each kind named, for a model loader's strict-load error."""
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith(optional))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k]))
    if not (missing or unexpected or wrong):
        return None
    shown = ", ".join(f"{k} {list(state[k].shape)} != {list(expected[k])}" for k in wrong[:3])
    return (
        f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
        f"{len(wrong)} with other shapes ({shown})"
    )


def check_keys(state: Mapping[str, Any], expected: Mapping[str, Shape], source: Path) -> None:
    """Raise an InputError naming a few missing / unexpected / misshapen keys when the sets differ."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        (k, tuple(state[k].shape), tuple(expected[k]))
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k])
    )
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        shown = ", ".join(f"{k} {list(got)} != expected {list(want)}" for k, got, want in wrong[:3])
        parts.append(f"{len(wrong)} with the wrong shape (e.g. {shown})")
    raise InputError(
        source,
        "state_dict",
        f"keys do not match the engine's model: {'; '.join(parts)} — is this the right checkpoint for this engine?",
    )


def whisper_encoder_keys(dims: Mapping[str, int]) -> dict[str, Shape]:
    """The state-dict keys and shapes of an openai-whisper audio encoder with these dims."""
    n_mels, ctx, width, layers = (
        dims["n_mels"],
        dims["n_audio_ctx"],
        dims["n_audio_state"],
        dims["n_audio_layer"],
    )
    keys: dict[str, Shape] = {
        "encoder.conv1.weight": (width, n_mels, 3),
        "encoder.conv1.bias": (width,),
        "encoder.conv2.weight": (width, width, 3),
        "encoder.conv2.bias": (width,),
        "encoder.positional_embedding": (ctx, width),
        "encoder.ln_post.weight": (width,),
        "encoder.ln_post.bias": (width,),
    }
    for i in range(layers):
        b = f"encoder.blocks.{i}."
        for name in ("query", "value", "out"):
            keys[f"{b}attn.{name}.weight"] = (width, width)
            keys[f"{b}attn.{name}.bias"] = (width,)
        keys[f"{b}attn.key.weight"] = (width, width)  # whisper's key projection has no bias
        for ln in ("attn_ln", "mlp_ln"):
            keys[f"{b}{ln}.weight"] = (width,)
            keys[f"{b}{ln}.bias"] = (width,)
        keys[f"{b}mlp.0.weight"] = (4 * width, width)
        keys[f"{b}mlp.0.bias"] = (4 * width,)
        keys[f"{b}mlp.2.weight"] = (width, 4 * width)
        keys[f"{b}mlp.2.bias"] = (width,)
    return keys


def _whisper_dims(dims: Any, source: Path) -> dict[str, int]:
    needed = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
    if not isinstance(dims, dict) or any(not isinstance(dims.get(k), int) for k in needed):
        raise InputError(source, "dims", f"expected integer {', '.join(needed)}")
    return {str(k): int(v) for k, v in dims.items() if isinstance(v, int)}


def unpickle_refusal(exc: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to retry with
    weights_only=False: that would run whatever code the file carries, which talkreel never does."""
    text = str(exc)
    detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
    detail = " ".join(detail.split("Check the documentation", 1)[0].split())
    reason = f" ({detail})" if detail else ""
    return (
        f"not a plain tensor checkpoint{reason}: damaged, or it holds code or objects beyond tensors, "
        "which talkreel never unpickles; re-download it or convert it to safetensors"
    )


def load_pickle(source: Path) -> Any:
    """A pickled torch checkpoint opened with weights_only=True (memory-mapped where the format allows); a file
    torch refuses or cannot read is one InputError that never advises unsafe loading."""
    import pickle

    import torch

    try:
        # mmap keeps a 5 GB checkpoint out of RAM until each tensor is written out.
        return torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise InputError(source, None, unpickle_refusal(exc)) from None
    except (RuntimeError, OSError, EOFError) as exc:
        if "mmap" not in str(exc):
            raise InputError(
                source, None, f"not a readable torch checkpoint (truncated or damaged?): {exc}"
            ) from None
    try:  # the legacy (pre-zip) torch format cannot be memory-mapped
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(source, None, unpickle_refusal(exc)) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise InputError(
            source, None, f"not a readable torch checkpoint (truncated or damaged?): {exc}"
        ) from None


def _state_dict_of(obj: Any, source: Path, *, field: str, required: bool) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict) and field in obj and isinstance(obj[field], dict):
        obj = obj[field]
    elif required:
        raise InputError(source, field, f"expected a checkpoint dict with a {field!r} entry")
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(source, field, "expected a mapping of parameter names to tensors")
    return {str(k): v for k, v in obj.items()}


def _save(state: Mapping[str, Any], output: Path, source: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    # safetensors refuses tensors that share storage (tied weights); each gets its own copy.
    seen: set[int] = set()
    tensors = {}
    for key in sorted(state):
        t = state[key].contiguous()
        storage = t.untyped_storage().data_ptr()
        if t.numel() and storage in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    shutil.copymode(source, tmp)  # safetensors creates 0600 files; the output is as readable as its source
    os.replace(tmp, output)
