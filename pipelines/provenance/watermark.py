"""Invisible watermark: a 32-bit output id (+ CRC-16) hidden in every frame.

The scheme is invisible-watermark's `dwtDctSvd` (imwatermark.EmbedDwtDctSvd) on the U plane of OpenCV's YUV,
with a quantisation step of 54 instead of the package's 36. The Haar DWT approximation band of the plane is cut
into 4x4 blocks; in each block the largest singular value of the block's DCT is quantised so that its remainder
modulo `scale` says the bit (0.25*scale for 0, 0.75*scale for 1), the 48 bits repeated over all blocks in
raster order. Frames marked here decode with the package's own decoder:
`WatermarkDecoder('bytes', 48).decode(bgr, 'dwtDctSvd', scales=[0, 54, 0])` (a test checks that).

Two ways in, one scheme: `embed` / `embed_in_place` mark an RGB frame; `embed_ycbcr` marks a frame on its way into
the 4:2:0 encoder (what a render does, through pipelines.media.video_out.I420Frames): the U plane is a linear
function of the Y'CbCr the encoder is given, so the band is read from the 2x2 means the conversion makes anyway and
the change goes into the Cb plane alone, with no full-size pass: about half the CPU (512x512, one thread: 1.0 ms
against 1.8 ms for the RGB mark).

Differences from the package's encoder, none of which changes what a decoder sees: no DCT (singular values do not
change under it, see `_top_singular`), vectorised numpy and OpenCV (the package loops over blocks in Python,
~0.2 s per 720p frame; this is ~0.75 ms per 512x512 frame on one thread), only the approximation band is changed
(its inverse DWT swaps the horizontal and vertical detail bands), and each value moves to the NEAREST point of
its bit's lattice rather than the one in its own cell (half the largest change, less tint on flat colour: +2 dB PSNR and
better survival in the bench). Reading uses a soft vote per block and averages over frames before the CRC check.

Why U and 54 (bench/compose_speed.py --watermark --package; figures in docs/compose.md): at the package's 36 a
user's CRF 28 re-encode of a real portrait lost the id, and luma at 36 does not survive talkreel's own CRF 18
encode (ffmpeg's RGB -> yuv420p -> RGB round trip shifts luma by about one level); at 54 both planes survive CRF 23
and CRF 28 re-encodes at the same size; U is kept (the package's plane; chroma changes are less visible). A
downscale destroys it at every strength tried (the block grid moves with the pixels): a same-size,
light-re-encode mark, not a robust one. On large flat areas (cards) it can show as a faint 8x8 chroma pattern.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ID_BITS = 32
CRC_BITS = 16
PAYLOAD_BITS = ID_BITS + CRC_BITS
DEFAULT_SCALE = 54.0  # imwatermark's 36 lost the id on a portrait after a CRF 28 re-encode (bench)
DEFAULT_CHANNEL = "U"
BLOCK = 4
METHOD = "dwtDctSvd"
MIN_PIXELS = 256 * 256  # imwatermark's own lower limit; smaller frames carry too few blocks per bit


def output_id(*parts: str) -> str:
    """8 hex digits naming one output (a hash of what made it), e.g. '3fa2c901'."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:8]


def payload_bits(wm_id: str) -> np.ndarray:
    """The 48 bits carried: the id's 4 bytes then CRC-16/CCITT of them (so a random read is rejected)."""
    raw = bytes.fromhex(wm_id)
    if len(raw) * 8 != ID_BITS:
        raise ValueError(f"watermark id must be {ID_BITS // 4} hex digits, got {wm_id!r}")
    crc = binascii.crc_hqx(raw, 0xFFFF).to_bytes(2, "big")
    return np.unpackbits(np.frombuffer(raw + crc, np.uint8))


def id_from_bits(bits: np.ndarray) -> str | None:
    """The id when the CRC matches, else None."""
    data = np.packbits(np.asarray(bits, np.uint8)).tobytes()
    raw, crc = data[: ID_BITS // 8], data[ID_BITS // 8 :]
    if binascii.crc_hqx(raw, 0xFFFF).to_bytes(2, "big") != crc:
        return None
    return raw.hex()


# The plane as a linear function of RGB (OpenCV's BGR2YUV, BT.601 weights, full range, which imwatermark embeds
# into): Y = 0.299 R + 0.587 G + 0.114 B, U = 0.492 (B - Y) + 128.
_PLANE = {
    "Y": (np.array([0.299, 0.587, 0.114], np.float32), 0.0),
    "U": (np.array([-0.492 * 0.299, -0.492 * 0.587, 0.492 * 0.886], np.float32), 128.0),
}
# RGB change that moves only the chosen plane by 1 (the other two of Y, U, V stay as they were).
_RGB_STEP = {
    "Y": np.array([1.0, 1.0, 1.0], np.float32),
    "U": np.array([0.0, -0.114 / 0.587 / 0.492, 1.0 / 0.492], np.float32),
}
READ_ITERATIONS = 8
EMBED_ITERATIONS = 4


def _band(rgb: np.ndarray, channel: str) -> np.ndarray:
    """The plane's Haar DWT approximation band (2x the 2x2 mean), cropped to whole 4x4 blocks, float32."""
    import cv2

    h8, w8 = rgb.shape[0] // 8 * 8, rgb.shape[1] // 8 * 8
    weights, offset = _PLANE[channel]
    # 2x the plane (scaling by 2 is exact in floating point, so this is the same band with one pass less)
    plane = cv2.transform(rgb[:h8, :w8].astype(np.float32), 2.0 * weights[None, :])
    # INTER_AREA at exactly half size is the 2x2 mean
    band = cv2.resize(plane, (w8 // 2, h8 // 2), interpolation=cv2.INTER_AREA)
    if offset:
        band += 2.0 * offset
    return band


@lru_cache(maxsize=4)
def _plane_from_ycbcr(channel: str, matrix_bytes: bytes) -> tuple[np.ndarray, float]:
    """For Y'CbCr made by a 3x4 RGB -> Y'CbCr matrix (float32 bytes): the 1x4 transform from a pixel's Y'CbCr to
    its band value (2x the plane), and the Cb change that moves the plane by one level.

    The plane is linear in RGB and RGB is linear in Y'CbCr, so the plane is linear in Y'CbCr; U's weights sum to
    zero, so it does not depend on Y' (for BT.709 limited range: U = 0.982 (Cb - 128) - 0.110 (Cr - 128) + 128)."""
    matrix = np.frombuffer(matrix_bytes, np.float32).reshape(3, 4).astype(np.float64)
    weights, offset = _PLANE[channel]
    per_ycbcr = weights.astype(np.float64) @ np.linalg.inv(matrix[:, :3])
    constant = offset - per_ycbcr @ matrix[:, 3]
    return 2.0 * np.array([[*per_ycbcr, constant]]), 1.0 / float(per_ycbcr[1])


def _entries(band: np.ndarray) -> np.ndarray:
    """The 4x4 blocks as a (4, 4, rows, cols) array: entry (i, j) of every block is `blocks[i, j]`."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    return np.ascontiguousarray(band.reshape(rows, BLOCK, cols, BLOCK).transpose(1, 3, 0, 2))


def _top_singular(b: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest singular value s0 (rows, cols) and its vectors u0, v0 (4, rows, cols) of every 4x4 block.

    imwatermark quantises s0 of each block's DCT; the DCT is orthonormal, so that is s0 of the block itself, and
    moving it, (s0' - s0) u0 v0^T, is the same rank-1 change in either domain: no DCT is needed. Power iteration
    on G = B^T B from the DC direction, as whole-array multiply-adds over all blocks at once (batched 4x4 LAPACK
    costs ~2 us a block; at 4096 blocks a numpy call costs about as much as its arithmetic, so the entries are
    stacked to keep the calls few). The plane's DC term dominates (U has a 128 offset), so it converges in a few
    steps: on a 512x512 portrait 4 steps give marks identical to an exact SVD.
    """
    g = np.empty((BLOCK, BLOCK, *b.shape[2:]), np.float32)
    for i in range(BLOCK):  # G is symmetric: each row from the diagonal on, mirrored below it
        row = (b[:, i : i + 1] * b[:, i:]).sum(0)
        g[i, i:] = row
        g[i + 1 :, i] = row[1:]
    v = g.sum(1)
    v += 1e-9
    for _ in range(iterations):
        w = (g * v).sum(1)
        v = w * (1.0 / (np.sqrt((w * w).sum(0)) + 1e-30))
    mv = (b * v).sum(1)
    s0 = np.sqrt((mv * mv).sum(0))
    return s0, mv * (1.0 / (s0 + 1e-30)), v


def _bit_index(rows: int, cols: int) -> np.ndarray:
    return (np.arange(rows * cols) % PAYLOAD_BITS).reshape(rows, cols)


@lru_cache(maxsize=8)
def _centres(wm_id: str, scale: float, rows: int, cols: int) -> np.ndarray:
    """Each block's bit-lattice offset (0.25 * scale for a 0, 0.75 * scale for a 1), read-only."""
    bits = payload_bits(wm_id)[_bit_index(rows, cols)]
    centre = ((0.25 + 0.5 * bits) * scale).astype(np.float32)
    centre.setflags(write=False)
    return centre


def _into(target: np.ndarray, result: np.ndarray) -> None:
    """OpenCV writes into a strided numpy view in place and returns it; should it ever hand back a new array
    instead, that is copied in, so a result is never lost."""
    if result is not target:
        target[...] = result


# Two neighbouring RGB pixels are 6 bytes, R0 G0 B0 R1 G1 B1: three 2-byte words, each a pair of channels.
_PAIR_WORDS = ((0, 1), (2, 0), (1, 2))


def _add_blocks(region: np.ndarray, delta: np.ndarray, steps: np.ndarray) -> None:
    """region[2y:2y+2, 2x:2x+2, c] = clip(region + round(steps[c] * delta[y, x])), in place.

    `delta` is at half resolution, so one value covers a 2x2 pixel block: each band row is applied to the two
    frame rows it covers through a strided view, and a pair of horizontal pixels is laid out as three 2-byte
    words (merged as byte pairs, then as words), so the change reaches full width without a full-size resize.
    Per channel the change is rounded to whole levels (OpenCV rounds to nearest) and split by the sign of delta
    into its positive and negative parts, so that two saturating uint8 passes give clip(frame + change).
    """
    import cv2

    hh, hw = delta.shape
    rows = region.reshape(hh, 2, hw * 6)  # band row y -> frame rows 2y and 2y + 1
    if not np.shares_memory(rows, region):
        raise ValueError("the frame's rows must be contiguous RGB pixels to be marked in place")
    rising = cv2.compare(delta, 0.0, cv2.CMP_GT)  # 255 where delta > 0
    zero = np.zeros((hh, hw), np.uint8)
    up, down = [zero] * 3, [zero] * 3
    for c, k in enumerate(float(k) for k in steps):
        if k == 0:
            continue
        size = cv2.convertScaleAbs(delta, alpha=abs(k))  # |round(k delta)|, saturated at 255
        along = cv2.bitwise_and(size, rising)
        against = cv2.subtract(size, along)
        up[c], down[c] = (along, against) if k > 0 else (against, along)
    for parts, apply in ((up, cv2.add), (down, cv2.subtract)):
        words = [cv2.merge([parts[a], parts[b]]).view(np.uint16)[..., 0] for a, b in _PAIR_WORDS]
        step = cv2.merge(words).view(np.uint8).reshape(hh, hw * 6)
        for r in (0, 1):
            view = rows[:, r]
            _into(view, apply(view, step, dst=view))


@dataclass(frozen=True)
class Watermarker:
    """Embeds one output id into frames; stateless per frame, so frames can be marked in any order."""

    wm_id: str
    scale: float = DEFAULT_SCALE
    channel: str = DEFAULT_CHANNEL

    def __post_init__(self) -> None:
        if self.channel not in _PLANE:
            raise ValueError(f"watermark channel must be one of {sorted(_PLANE)}, got {self.channel!r}")

    def embed(self, frame: np.ndarray) -> np.ndarray:
        """A marked copy of an RGB uint8 frame (frames under 256x256 pixels are returned unmarked)."""
        h, w = frame.shape[:2]
        if h * w < MIN_PIXELS:
            return frame
        out = np.array(frame, order="C")
        self.embed_in_place(out)
        return out

    def embed_in_place(self, frame: np.ndarray) -> None:
        """Mark an RGB uint8 frame in place (what `embed` returns, without the copy); small frames are left alone.

        The frame's pixels must be laid out as in a C-contiguous image (rows may be strided)."""
        h, w = frame.shape[:2]
        if h * w < MIN_PIXELS:
            return
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.strides[1:] != (3, 1):
            raise ValueError("embed_in_place needs an RGB uint8 frame whose rows are contiguous")
        band = _band(frame, self.channel)
        delta = self._change(band)
        _add_blocks(frame[: band.shape[0] * 2, : band.shape[1] * 2], delta, _RGB_STEP[self.channel])

    def embed_ycbcr(self, means: np.ndarray, cb: np.ndarray, matrix: np.ndarray) -> None:
        """Mark a frame on its way into a 4:2:0 encoder, in place: the change `embed_in_place` makes to the
        U plane, made through the Cb plane alone.

        `means`: the frame's Y'CbCr at chroma resolution (h/2, w/2, 3 uint8: each 2x2 block's mean) made by
        `matrix`, the 3x4 RGB -> Y'CbCr transform of the encoder's input; `cb`: its Cb plane (h/2, w/2 uint8),
        written. The band is read from the means (`_plane_from_ycbcr`); their rounding to whole levels moves a
        block's s0 by ~1 against the lattice's step of 54. U plane only (a Y mark would change full-size luma)."""
        h2, w2 = means.shape[:2]
        if 4 * h2 * w2 < MIN_PIXELS:
            return
        if self.channel != "U":
            raise ValueError("embed_ycbcr marks the U plane only")
        import cv2

        weights, step = _plane_from_ycbcr(self.channel, np.asarray(matrix, np.float32).tobytes())
        hb, wb = h2 // BLOCK * BLOCK, w2 // BLOCK * BLOCK  # as _band: whole 8x8-pixel blocks
        band = cv2.transform(means[:hb, :wb].astype(np.float32), weights)
        delta = self._change(band)
        region = cb[:hb, :wb]
        _into(region, cv2.add(region, delta * step, dst=region, dtype=cv2.CV_8U))

    def _change(self, band: np.ndarray) -> np.ndarray:
        """The plane's change on each of the band's 2x2 pixel blocks (float32, the band's shape) that moves every
        4x4 block's largest singular value onto its bit's lattice."""
        import cv2

        rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
        s0, u0, v0 = _top_singular(_entries(band), EMBED_ITERATIONS)
        # The nearest point of the bit's lattice (k + 0.25 + 0.5 * bit) * scale, not the one in s0's own cell as
        # imwatermark does: half the largest change, and on flat colour the 0- and 1-blocks move in opposite
        # directions instead of all one way (a visible tint). Reading is unchanged (s0 mod scale).
        centre = _centres(self.wm_id, float(self.scale), rows, cols)
        target = np.round((s0 - centre) / self.scale) * self.scale + centre
        target = np.where(target < 0, target + self.scale, target)
        # A change d of a Haar approximation coefficient is d/2 on each of its 2x2 pixels (so 4:2:0 chroma
        # subsampling keeps it).
        outer = ((target - s0) * 0.5 * u0)[:, None] * v0[None]  # (4, 4, rows, cols): half * u0 v0^T
        # Into band layout, block (y, x) entry (i, j) at [4 y + i, 4 x + j]: row i of every block is one 4-channel
        # merge (numpy's own transpose of this shape runs 4-element inner loops, ~4x slower).
        delta = np.empty((rows, BLOCK, cols, BLOCK), np.float32)
        for i in range(BLOCK):
            _into(delta[:, i], cv2.merge(list(outer[i]), dst=delta[:, i]))
        return delta.reshape(rows * BLOCK, cols * BLOCK)


def read_scores(
    frame: np.ndarray, scale: float = DEFAULT_SCALE, channel: str = DEFAULT_CHANNEL
) -> np.ndarray | None:
    """Per-bit soft scores in [0, 1] (share of blocks voting 1) for one RGB frame; None if too small."""
    h, w = frame.shape[:2]
    if h * w < MIN_PIXELS:
        return None
    band = _band(frame, channel)
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    s0 = _top_singular(_entries(band), READ_ITERATIONS)[0].astype(np.float64)
    # Soft vote: -sin(2 pi r) is +1 at the bit-1 centre (r = 0.75), -1 at the bit-0 centre (0.25), ~0 at the
    # decision edges, so blocks that H.264 pushed near an edge weigh little. Mapped to [0, 1] like a share.
    r = (s0 % scale) / scale
    votes = (0.5 - 0.5 * np.sin(2 * np.pi * r)).ravel()
    index = _bit_index(rows, cols).ravel()
    return np.bincount(index, weights=votes, minlength=PAYLOAD_BITS) / np.bincount(
        index, minlength=PAYLOAD_BITS
    )


@dataclass(frozen=True)
class WatermarkReading:
    found: bool
    wm_id: str | None
    frames_read: int
    frames_agreeing: int  # frames whose own bits give the same id (CRC-checked)
    bit_margin: float  # mean |score - 0.5| of the voted bits: 0 is noise, 0.5 is a clean read

    def as_dict(self) -> dict:
        return {
            "found": self.found,
            "id": self.wm_id,
            "frames_read": self.frames_read,
            "frames_agreeing": self.frames_agreeing,
            "bit_margin": round(self.bit_margin, 3),
        }


def vote(
    frames: Iterable[np.ndarray], scale: float = DEFAULT_SCALE, channel: str = DEFAULT_CHANNEL
) -> WatermarkReading:
    """Majority vote over frames: the mean of per-frame soft scores, thresholded, then CRC-checked."""
    per_frame = [s for s in (read_scores(f, scale, channel) for f in frames) if s is not None]
    if not per_frame:
        return WatermarkReading(False, None, 0, 0, 0.0)
    mean = np.mean(per_frame, axis=0)
    bits = (mean > 0.5).astype(np.uint8)
    wm_id = id_from_bits(bits)
    agreeing = sum(1 for s in per_frame if id_from_bits((s > 0.5).astype(np.uint8)) == wm_id) if wm_id else 0
    return WatermarkReading(
        wm_id is not None, wm_id, len(per_frame), agreeing, float(np.mean(np.abs(mean - 0.5)))
    )


def sample_frames(frames: Iterable[np.ndarray], n_total: int | None, count: int) -> Iterable[np.ndarray]:
    """`count` frames spread evenly over a stream of `n_total` (None: the first `count`)."""
    if n_total is None or n_total <= count:
        for i, frame in enumerate(frames):
            if i >= count:
                return
            yield frame
        return
    wanted = set(np.linspace(0, n_total - 1, count).round().astype(int).tolist())
    for i, frame in enumerate(frames):
        if i in wanted:
            yield frame
