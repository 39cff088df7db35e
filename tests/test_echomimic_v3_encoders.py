import pytest
import torch
from echomimic_v3_helpers import tiny_image_encoder, tiny_text_encoder, tiny_vae

from pipelines.engines.echomimic_v3.encoders import (
    EncoderCheckpointError,
    clip_native_names,
    clip_vision_encoder,
    umt5_encoder,
    umt5_native_names,
    wan_vae,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread (conftest)


def test_wan_t5_names_load_into_umt5_and_give_the_same_states():
    source = tiny_text_encoder()
    native = umt5_native_names(source)
    assert "blocks.1.pos_embedding.embedding.weight" in native and "blocks.0.ffn.gate.0.weight" in native
    loaded = umt5_encoder(native, num_heads=4)
    ids = torch.tensor([[5, 6, 7, 1, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        a = source(ids, attention_mask=mask).last_hidden_state
        b = loaded(ids, attention_mask=mask).last_hidden_state
    assert torch.equal(a, b)
    with pytest.raises(EncoderCheckpointError, match="unknown key"):
        umt5_encoder({**native, "blocks.0.attn.extra.weight": torch.zeros(1)}, num_heads=4)
    del native["blocks.1.norm2.weight"]
    with pytest.raises(EncoderCheckpointError, match="1 missing"):
        umt5_encoder(native, num_heads=4)


def test_open_clip_visual_names_load_into_clip_vision_with_qkv_split():
    source = tiny_image_encoder()
    native = clip_native_names(source)
    native["textual.token_embedding.weight"] = torch.zeros(3, 4)  # the text tower is in the file and ignored
    fused = native["visual.transformer.0.attn.to_qkv.weight"]
    assert fused.shape[0] == 3 * fused.shape[1]
    loaded = clip_vision_encoder(native, num_heads=2)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = source(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        b = loaded(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(a, b)
    with pytest.raises(EncoderCheckpointError, match="no visual"):
        clip_vision_encoder({"textual.x": torch.zeros(1)})


def test_vae_in_diffusers_names_loads_strictly():
    source = tiny_vae()
    config = dict(source.config)
    loaded = wan_vae(source.state_dict(), {k: v for k, v in config.items() if not k.startswith("_")})
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(source.encode(video).latent_dist.mode(), loaded.encode(video).latent_dist.mode())
    broken = dict(source.state_dict())
    broken.pop(next(iter(broken)))
    with pytest.raises(EncoderCheckpointError, match="1 missing"):
        wan_vae(broken, {k: v for k, v in config.items() if not k.startswith("_")})
