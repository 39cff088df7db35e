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


def _reference_embed(frame, wm_id, scale=DEFAULT_SCALE):
    """The scheme written plainly (float64, exact SVD per block, the change at full size): slow but clear."""
    h8, w8 = frame.shape[0] // 8 * 8, frame.shape[1] // 8 * 8
    plane = (
        frame[:h8, :w8].astype(np.float64) @ np.array([-0.492 * 0.299, -0.492 * 0.587, 0.492 * 0.886]) + 128
    )
    band = 2.0 * plane.reshape(h8 // 2, 2, w8 // 2, 2).mean(axis=(1, 3))  # Haar approximation band
    rows, cols = band.shape[0] // 4, band.shape[1] // 4
    u, s, vt = np.linalg.svd(band.reshape(rows, 4, cols, 4).transpose(0, 2, 1, 3))
    s0 = s[..., 0]
    bits = payload_bits(wm_id)[np.arange(rows * cols).reshape(rows, cols) % PAYLOAD_BITS]
    centre = (0.25 + 0.5 * bits) * scale
    target = np.round((s0 - centre) / scale) * scale + centre
    target[target < 0] += scale
    change = 0.5 * (target - s0)[..., None, None] * u[..., :, :1] * vt[..., :1, :]  # per pixel of each 2x2
    full = change.transpose(0, 2, 1, 3).reshape(rows * 4, cols * 4).repeat(2, 0).repeat(2, 1)
    out = frame.astype(np.float64)
    out[:h8, :w8] += np.round(full[..., None] * np.array([0.0, -0.114 / 0.587 / 0.492, 1.0 / 0.492]))
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [SIZE, (517, 389)])
def test_embed_equals_the_plain_formulation(size):
    from skimage import data

    for frame in (cv2.resize(clip_frame(3), size), cv2.resize(data.astronaut(), size)):
        marked = Watermarker("0badcafe").embed(frame)
        diff = np.abs(marked.astype(int) - _reference_embed(frame, "0badcafe"))
        assert (marked != frame).mean() > 0.3  # it did change the frame
        # float32 power iteration vs float64 SVD: at most one level, on a handful of values
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_embed_in_place_marks_like_embed_and_embed_leaves_its_input():
    marker = Watermarker("3fa2c901")
    original = cv2.resize(clip_frame(2), (600, 400))
    big = original.copy()
    frame = big[5:305, 7:557]  # a view with strided rows, odd offsets, a width that is no multiple of 8
    before = frame.copy()
    marked = marker.embed(frame)
    assert np.array_equal(frame, before)
    marker.embed_in_place(frame)
    assert np.array_equal(frame, marked)
    outside = np.ones(big.shape[:2], bool)
    outside[5:305, 7:557] = False
    assert np.array_equal(big[outside], original[outside])
    with pytest.raises(ValueError):
        marker.embed_in_place(np.ascontiguousarray(big[:, :, ::-1])[:, :, ::-1])  # channels not contiguous


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


def _i420_to_rgb(buffer, size):
    """What a player shows of I420Frames' bytes: BT.709 limited range back to RGB, chroma repeated over its 2x2."""
    from pipelines.media.video_out import I420Frames

    w, h = size
    q = (w // 2) * (h // 2)
    y = buffer[: w * h].reshape(h, w).astype(np.float64)
    cb = buffer[w * h : w * h + q].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
    cr = buffer[w * h + q :].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
    ycbcr = np.stack([y, cb, cr], -1) - I420Frames.MATRIX[:, 3]
    rgb = ycbcr @ np.linalg.inv(I420Frames.MATRIX[:, :3].astype(np.float64)).T
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [SIZE, (640, 360)])
def test_frames_marked_on_their_way_into_the_encoder_read_back(size):
    """The encoder's path (I420Frames with a watermark: the mark put on the chroma plane) reads back from what a
    player shows, by our reader and by the package's own decoder, and changes only the Cb plane."""
    from imwatermark import WatermarkDecoder
    from skimage import data

    from pipelines.media.video_out import I420Frames

    marker = Watermarker("0badcafe")
    plain, marking = I420Frames(size), I420Frames(size, marker)
    w, h = size
    for frame in (cv2.resize(clip_frame(3), size), cv2.resize(data.astronaut(), size)):
        before = np.array(plain(frame))
        after = np.array(marking(frame))
        changed = np.flatnonzero(before != after)
        assert len(changed) > 0.3 * (w // 2) * (h // 2)
        assert changed.min() >= w * h and changed.max() < w * h + (w // 2) * (h // 2)  # only Cb moved
        shown = _i420_to_rgb(after, size)
        assert psnr(shown, _i420_to_rgb(before, size)) > 36
        assert id_from_bits((read_scores(shown) > 0.5).astype(np.uint8)) == "0badcafe"
        assert read_scores(_i420_to_rgb(before, size)) is not None
        assert id_from_bits((read_scores(_i420_to_rgb(before, size)) > 0.5).astype(np.uint8)) is None
        bgr = cv2.cvtColor(shown, cv2.COLOR_RGB2BGR)
        decoded = WatermarkDecoder("bytes", PAYLOAD_BITS).decode(
            bgr, "dwtDctSvd", scales=[0, int(DEFAULT_SCALE), 0]
        )
        assert decoded[:4].hex() == "0badcafe"
    with pytest.raises(ValueError):
        I420Frames(size, Watermarker("0badcafe", channel="Y"))(cv2.resize(clip_frame(0), size))


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
