import cv2
import numpy as np
import pytest

from pipelines.provenance.label import resolve_label
from pipelines.provenance.watermark import (
    DEFAULT_SCALE,
    PAYLOAD_BITS,
    Watermarker,
    id_from_bits,
    output_id,
    payload_bits,
    read_scores,
    sample_frames,
    vote,
)
from pipelines.spec.compose import Theme, ThemeLabel
from pipelines.spec.persona import Disclosure
from tests.compose_helpers import clip_frame, psnr

SIZE = (512, 288)


def _frames(n=4):
    return [cv2.resize(clip_frame(i), SIZE) for i in range(n)]


def test_output_id_and_payload_round_trip():
    wm_id = output_id("job.yaml", "abc")
    assert len(wm_id) == 8 and int(wm_id, 16) >= 0
    bits = payload_bits(wm_id)
    assert bits.shape == (PAYLOAD_BITS,)
    assert id_from_bits(bits) == wm_id
    flipped = bits.copy()
    flipped[3] ^= 1
    assert id_from_bits(flipped) is None  # the CRC rejects a wrong bit
    with pytest.raises(ValueError):
        payload_bits("xyz")


def test_embed_is_invisible_and_reads_back_from_every_frame():
    marker = Watermarker("3fa2c901")
    for frame in _frames():
        marked = marker.embed(frame)
        assert psnr(marked, frame) > 36
        scores = read_scores(marked)
        assert id_from_bits((scores > 0.5).astype(np.uint8)) == "3fa2c901"
    reading = vote(marker.embed(f) for f in _frames())
    assert reading.found and reading.wm_id == "3fa2c901" and reading.frames_agreeing == 4


def test_unmarked_frames_give_no_id():
    reading = vote(_frames())
    assert not reading.found and reading.wm_id is None


def test_frames_too_small_are_left_alone():
    small = clip_frame(0, (128, 128))
    assert Watermarker("3fa2c901").embed(small) is small
    assert read_scores(small) is None
    assert vote([small]).frames_read == 0


def test_the_packages_own_decoder_reads_our_marks():
    from imwatermark import WatermarkDecoder

    marked = Watermarker("0badcafe").embed(_frames(1)[0])
    bgr = cv2.cvtColor(marked, cv2.COLOR_RGB2BGR)
    decoded = WatermarkDecoder("bytes", PAYLOAD_BITS).decode(
        bgr, "dwtDctSvd", scales=[0, int(DEFAULT_SCALE), 0]
    )
    assert decoded[:4].hex() == "0badcafe"


def test_sample_frames_spreads_over_the_stream():
    picked = list(sample_frames(iter(range(100)), 100, 5))
    assert picked == [0, 25, 50, 74, 99]
    assert list(sample_frames(iter(range(10)), None, 3)) == [0, 1, 2]


def test_label_precedence_persona_over_theme_over_default():
    theme = Theme(label=ThemeLabel(text="Made with AI", position="top-left"))
    assert resolve_label(None, Theme()).text == "AI-generated"
    assert resolve_label(None, theme).text == "Made with AI"
    assert resolve_label(Disclosure(), theme).position == "top-left"  # persona left them at their defaults
    own = resolve_label(Disclosure(text="Generato con IA"), theme)
    assert own.text == "Generato con IA" and own.position == "top-left"
    assert resolve_label(Disclosure(label=False), theme) is None
