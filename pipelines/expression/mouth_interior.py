"""The inside of an opened mouth, painted for a face whose picture never showed it (a still portrait).

`palette_of` reads the persona's own colours once: its lips, the skin around the mouth and, when the portrait
shows them, its teeth. Every interior colour is derived from those by scaling, never from a fixed hue, so a
greyscale source (a black-and-white photo, a sketch, a statue) gets a greyscale interior, a warm-lit photo a
warm one.

`mouth_fill` paints between the two lines the mouth warp leaves (the resting lower inner lip carried by the
upper side's field, and by the lower side's), front to back: the lips' shadowed inner edges (over the fringe of
resting-mouth pixels the warp leaves along them), a band of upper teeth following the upper lip's curve (gum
line in the lip's shadow, soft gaps between teeth sized in the face's units, receding into shadow at the
corners), the lower teeth's tips faintly, a tongue low in the cavity on wider openings, and the cavity, darkest
at the back and the corners. The lips themselves are never painted over: the fill fades out within a couple of
pixels beyond the opening's outline. Every value is a function of the two lines and the opening alone: the same
opening paints the same interior, a small change a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from pipelines.face import mesh

_CHEEK_SKIN = (205, 425, 207, 427, 36, 266, 200, 199)  # cheeks beside the mouth and the chin below it
# the lips' inner edge, where it turns into the mouth: the lip colour shaded, fading into the cavity over a
# blur of EDGE_BLUR reaches (wet inner lip into shadow, not an outline)
LIP_EDGE = 0.85
EDGE_BLUR = 1.0
GAP_SHADE = 0.1  # how much a gap between two upper teeth darkens them
TEETH_READ = 0.04  # the share of the resting opening's pixels read as the portrait's own teeth
TEETH = 0.13  # how far the upper teeth show under the upper lip of a speaking mouth, in pupil distances


def teeth_share(rest_gap: float) -> float:
    """How much of the upper teeth a portrait's resting inner-lip gap (pupil distances) leaves to be painted:
    a closed mouth all of them, parted lips that show their upper part the rest, a grin none."""
    return float(np.clip(1.0 - max(rest_gap, 0.0) / TEETH, 0.0, 1.0))


@dataclass(frozen=True)
class MouthPalette:
    """RGB float32 colours of one face: lips, skin and teeth (sampled or derived)."""

    lips: np.ndarray
    skin: np.ndarray
    teeth: np.ndarray

    @cached_property
    def colours(self) -> np.ndarray:
        """(4, 3): lips, teeth, tongue and cavity, the four colours every interior pixel is a mix of."""
        return np.stack([self.lips, self.teeth, self.tongue, self.cavity]).astype(np.float32)

    @property
    def cavity(self) -> np.ndarray:
        return self.lips * 0.3

    @property
    def tongue(self) -> np.ndarray:
        return self.lips * 0.85


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114], np.float32))


def _whiteness(rgb: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n,): luma less chroma (max - min channel): high for teeth, lower for lips however lit."""
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32) - (rgb.max(1) - rgb.min(1))


def palette_of(image: np.ndarray, points: np.ndarray, unit: float, teeth_visible: bool) -> MouthPalette:
    """The face's colours from its image and landmarks (478, 2): median lip colour between the outer and inner
    lip contours, median skin beside the mouth, and the teeth's colour when the mouth shows them at rest (the
    whitest TEETH_READ of the opening), else a near-neutral white a little brighter than the skin, tinted by it."""
    rgb = image[..., :3]
    pts = np.asarray(points, np.float64)[:, :2]
    outer, inner = pts[list(mesh.LIPS_OUTER)], pts[list(mesh.LIPS_INNER)]
    x0, y0 = np.maximum(np.floor(outer.min(0)).astype(int) - 2, 0)
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 3
    x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    box = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
    ring = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(ring, [np.round(outer - [x0, y0]).astype(np.int32)], 1)
    opening = np.zeros_like(ring)
    cv2.fillPoly(opening, [np.round(inner - [x0, y0]).astype(np.int32)], 1)
    lip_px = box[(ring & (1 - opening)).ravel() > 0]
    r = max(1, int(0.03 * unit))
    skin_px = np.concatenate(
        [
            rgb[max(int(y) - r, 0) : int(y) + r + 1, max(int(x) - r, 0) : int(x) + r + 1].reshape(-1, 3)
            for x, y in pts[list(_CHEEK_SKIN)]
        ]
    ).astype(np.float32)
    skin = np.median(skin_px, 0) if len(skin_px) else np.full(3, 160.0, np.float32)
    lips = np.median(lip_px, 0) if len(lip_px) >= 8 else skin * np.float32(0.85)
    teeth = None
    inside = box[opening.ravel() > 0]
    if teeth_visible and len(inside) >= 12:
        # the teeth are the brightest, least coloured pixels between the lips; parted lips often show only a
        # sliver of them (a tenth of the opening), the rest lips and shadow, so the whitest few are read (the
        # brightest third was mostly lip: pink teeth)
        white = _whiteness(inside)
        bright = inside[white >= np.quantile(white, 1.0 - TEETH_READ)]
        if _whiteness(np.median(bright, 0)[None])[0] > _whiteness(lips[None])[0]:
            teeth = np.median(bright, 0)
    if teeth is None:
        # brighter than any skin, whatever the skin: a dark face's teeth are not grey, a pale face's not skin
        level = _luma(skin) + 0.55 * (240.0 - _luma(skin))
        tint = skin / max(_luma(skin), 1.0)
        teeth = level * (0.8 + 0.2 * tint)
    return MouthPalette(
        lips.astype(np.float32), skin.astype(np.float32), np.clip(teeth, 0, 255).astype(np.float32)
    )


def _circular_smoothing(points: int, reach: float) -> np.ndarray:
    """(points, points) matrix of a circular Gaussian of `reach` times the outline's length."""
    sigma = reach * points
    step = np.arange(points)
    apart = np.abs(step[:, None] - step[None, :])
    apart = np.minimum(apart, points - apart)
    kernel = np.exp(-0.5 * (apart / sigma) ** 2)
    return kernel / kernel.sum(1, keepdims=True)


_GROW = np.ones((3, 3), np.uint8)
# Teeth have a size in the face's units, not the mouth's: central incisors ~0.13 pupil distances wide, then
# narrower as the arch turns away from the camera, so a wide smile shows more teeth and a narrow 'o' fewer, as
# real mouths do. Between two teeth a soft darker line 0.012 pupil distances wide (~1.5 px at 512x512).
_GAP_AT = np.linspace(0.0, 0.6, 601)
_GAPS = np.exp(
    -((np.abs(_GAP_AT[:, None] - np.array([0.0, 0.13, 0.23, 0.31, 0.37, 0.42])).min(1) / 0.012) ** 2)
)
_OUTLINE_POINTS = 96
_SMOOTHING = _circular_smoothing(_OUTLINE_POINTS, 0.035)  # made once: every open frame smooths an outline


def _rounded(poly: np.ndarray) -> np.ndarray:
    """The closed polygon resampled evenly along its outline and smoothed around it (a circular Gaussian of
    3.5% of the perimeter): its corners become curves following the lip contour. The inner-lip landmarks are
    few and crowd at the mouth corners, so the opening's outline was straight segments meeting at sharp
    angles (a pentagon on wide openings). Smoothing pulls convex corners inwards, so the painted interior
    stays inside the opening there and the lips round off its corners."""
    closed = np.concatenate([poly, poly[:1]])
    step = np.diff(closed, axis=0)
    along = np.concatenate([[0.0], np.cumsum(np.hypot(step[:, 0], step[:, 1]))])
    if along[-1] <= 1e-6:
        return poly
    at = np.arange(_OUTLINE_POINTS) * (along[-1] / _OUTLINE_POINTS)
    even = np.empty((_OUTLINE_POINTS, 2))
    even[:, 0] = np.interp(at, along, closed[:, 0])
    even[:, 1] = np.interp(at, along, closed[:, 1])
    return _SMOOTHING @ even


def _blur(x: np.ndarray, sigma: float, reach: float) -> np.ndarray:
    """A Gaussian blur of `sigma` whose kernel ends `reach` sigmas out (OpenCV's own reaches 4 for floats: a
    kernel twice as long, and twice the time, for tails that change nothing one can see)."""
    size = 2 * int(np.ceil(reach * sigma)) + 1
    return cv2.GaussianBlur(x, (size, size), sigma)


def _unit_clip(x: np.ndarray) -> np.ndarray:
    """x clipped to 0..1 in place (np.clip's own overhead is several times the arithmetic on a mouth's box,
    and this runs a dozen times on every open frame)."""
    return np.minimum(np.maximum(x, 0.0, out=x), 1.0, out=x)


def _smooth(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 below a, 1 above b, a smooth S between (Hermite): shading that ramps without a visible edge."""
    t = _unit_clip((x - np.float32(a)) * np.float32(1.0 / (b - a)))
    return t * t * (3.0 - 2.0 * t)


# Down an upper tooth (0 at the gum line, 1 at the tip): its light (in the upper lip's shadow at the top, a
# little darker at the translucent tip) and a hint of the gum line in the lips' hue. Tables read per pixel: two
# dozen array operations less on every open frame.
_DOWN_STEPS = 64
_DOWN = np.linspace(0.0, 1.0, _DOWN_STEPS + 1, dtype=np.float32)
_DOWN_GUM = np.float32(0.36) * (1.0 - np.minimum(_DOWN / np.float32(0.16), 1.0)) ** 2
_DOWN_LIGHT = (0.62 + 0.38 * _smooth(_DOWN, 0.0, 0.45) - 0.12 * _smooth(_DOWN, 0.7, 1.0)) * (1.0 - _DOWN_GUM)
# Down the tongue (0 at its top, 1 at the lower lip): how much of it covers the cavity (its rounded top fades in
# over half its height) and its light: dim in the mouth's shade, a little lighter towards the front, where the
# opening lets the light in. (A tongue lit on a narrow ridge and darker again towards the lip read as a thin
# crescent, a second lower lip drawn inside the mouth.)
_INTO_STEPS = 32
_INTO = np.linspace(0.0, 1.0, _INTO_STEPS + 1, dtype=np.float32)
_INTO_COVER = _smooth(_INTO, 0.0, 0.5)
_INTO_LIGHT = 0.35 + 0.2 * _smooth(_INTO, 0.0, 0.7)


def _ramp(x: float, a: float, b: float) -> float:
    """`_smooth` of one number."""
    t = min(max((x - a) / (b - a), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _tooth_gaps(offset: np.ndarray, unit: float) -> np.ndarray:
    """Per column (`offset`: pixels from the middle of the mouth), how much a gap between two upper teeth
    darkens it (0..1): `_GAPS` read at the offset in pupil distances."""
    return np.interp(np.abs(offset) * (1.0 / unit), _GAP_AT, _GAPS).astype(np.float32)


def mouth_fill(
    image: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    unit: float,
    opening: float,
    teeth: float,
    palette: MouthPalette,
) -> tuple[int, int, int, int] | None:
    """Paint the part of the mouth that the opening uncovers, in place; returns the box (y0, y1, x0, x1) it
    painted.

    `top`: where the resting mouth's lower edge went (the lower inner lip carried by the upper side's field),
    `bottom`: the displaced lower inner lip, both from the image-left inner corner to the right one. Whatever
    the resting mouth showed (closed lips, or teeth in a smiling portrait) stays above `top`. `teeth`: the share
    of the upper teeth's height painted under `top` (1 for a portrait whose mouth is closed at rest, less for
    one whose parted lips already show the teeth's upper part, 0 for a grin that shows them whole).

    Every value is a function of the two lines and the opening alone (no noise, no state), so the same opening
    paints the same interior on every frame and a small change of the opening changes it a little."""
    if opening <= 0.02:
        return None
    top = np.asarray(top, np.float64)
    bottom = np.asarray(bottom, np.float64)
    # The painted area reaches a little past the opening's outline and fades there: the warp leaves a fringe
    # of the resting mouth's pixels along the lips' inner edges (landmarks sit a pixel or two off the real
    # edge: a bright line of smeared teeth around the hole). Over it the fill paints the shadowed inner edge
    # of the lip, so the lip itself, a few pixels further out, is never covered.
    reach = max(1.0, 0.016 * unit)
    pts = np.concatenate([top, bottom])
    pad = int(np.ceil(1.5 * reach)) + 2  # (how far `cover` reaches beyond the outline)
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    h, w = y1 - y0, x1 - x0
    outline = np.concatenate([top, bottom[::-1]]) - [x0, y0]
    shape = np.zeros((h, w), np.float32)
    cv2.fillPoly(
        shape, [np.round(_rounded(outline) * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2
    )
    # inside the rounded outline: the mouth; between it and the landmarks' own outline (the corners it rounds
    # off) and a little beyond both, the lips' shadowed inner edges. Blurred over a reach: the inner lip darkens
    # gradually into the cavity's shadow (a narrower blur drew a sharp lip-coloured ring round a cut-out hole).
    inner = _blur(shape, EDGE_BLUR * reach, 1.5)
    cv2.fillPoly(shape, [np.round(outline * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    # 1 up to a pixel beyond the outline (where the fringe lies), fading out over a couple more
    cover = _blur(cv2.dilate(shape, _GROW), 0.5 * reach, 2.0)  # (doubled, capped at 1: `alpha`)

    xs = np.arange(w, dtype=np.float64) + x0
    order = np.argsort(top[:, 0])
    top_y = np.interp(xs, top[order, 0], top[order, 1]) - y0
    top_y = top_y.astype(np.float32)
    order = np.argsort(bottom[:, 0])
    bottom_y = (np.interp(xs, bottom[order, 0], bottom[order, 1]) - y0).astype(np.float32)
    gap = np.maximum(bottom_y - top_y, 1.0).astype(np.float32)
    depth = np.arange(h, dtype=np.float32)[:, None] - top_y  # px under `top`
    left, right = top[:, 0].min(), top[:, 0].max()
    span = max(1.0, right - left)
    cx = np.clip((xs - left) * (2.0 / span) - 1.0, -1.0, 1.0).astype(np.float32)
    centre = 1.0 - cx * cx  # 1 in the middle of the mouth, 0 at the corners (per column)
    opened = float(min(opening, 1.3))
    # The layers are laid front to back: each takes its share (its alpha) of what the layers in front of it
    # leave seen (`seen`). Every colour is one of the palette's four times a shade, so the picture is a
    # weighted sum of them (one cv2.transform at the end; a grey palette gives grey whatever the weights).
    # the lips' inner edges, over the fringe the warp left: the lip's own colour, shaded. Above `top`
    # only where the portrait shows its upper lip there (towards the corners, or all along a mouth closed at
    # rest); in the middle of parted lips it shows its own teeth, left as they are.
    upper = np.maximum(_smooth(1.0 - centre, 0.5, 0.85), np.float32(_ramp(teeth, 0.6, 0.9)))
    lead = np.float32(0.6 * reach)  # the resting lower lip's last pixels, carried up by `top`: painted too
    rows = max(int(top_y.max() - lead) + 1, 0)  # (the rows where some pixels lie above `top`)
    # (antialiased over a pixel: a row-by-row cut left a staircase along the top of the painted teeth; only
    # the middle columns, where `upper` is under 1, change)
    parted = np.flatnonzero(upper < 1.0)
    u0, u1 = (int(parted[0]), int(parted[-1]) + 1) if len(parted) else (0, 0)
    if u1 and rows:
        above = _unit_clip(depth[:rows, u0:u1] + (lead + np.float32(1.0)))
        above *= np.float32(1.0) - upper[u0:u1]
        cover[:rows, u0:u1] *= above + upper[u0:u1]
    seen = inner  # (what the lips' edge leaves seen; `inner` is not needed again)
    # the lip's inner edge: the lip's colour shaded, darker towards the cavity (the blur's ramp) and towards
    # the corners, where the lips pinch together in the cheeks' shadow (a lip-lit edge there outlined the
    # rounded-off corners, where the ring is widest)
    edge = (LIP_EDGE * (0.25 + 0.75 * np.sqrt(centre))).astype(np.float32)
    w_lips = np.float32(1.0) - seen
    w_lips *= w_lips  # (the lip's light falls off fast into the opening: no lit plateau)
    w_lips *= edge
    w_teeth = np.zeros_like(seen)
    w_tongue = np.zeros_like(seen)

    if teeth > 0.0:
        # upper teeth: a band hanging from `top`, following its curve; shorter towards the corners (the arch
        # turns away) and receding into their shadow, separated by soft darker lines, in the upper lip's
        # shadow at the gum line, a little darker again at their translucent tips; a narrow slit shows
        # shadow, not a bright sliver
        root = np.sqrt(centre)
        band = (np.minimum(TEETH * min(float(teeth), 1.0) * unit, 0.42 * gap) * root).astype(np.float32)
        gaps = _tooth_gaps(xs - 0.5 * (left + right), unit)
        soft = max(0.7, 0.012 * unit)
        r0 = max(int(top_y.min() - lead - soft) - 1, 0)
        r1 = min(int((top_y + band).max() + soft) + 2, h)
        d = depth[r0:r1]
        slit = _ramp(float(gap.max()) / unit, 0.03, 0.16)
        tips = (band * (1.0 - 0.04 * gaps) + 0.5 * soft) * (1.0 / soft)  # rounded off where two teeth meet
        dim = np.float32(0.35 + 0.65 * slit)  # (a narrow slit shows the teeth in shadow)
        inside = tips * dim - d * (dim / soft)
        inside = np.minimum(np.maximum(inside, 0.0, out=inside), dim, out=inside)
        inside *= _unit_clip((d + lead) * np.float32(1.0 / soft) + 1.0)
        # down the tooth, 0 at the gum line to 1 at the tips (in _DOWN_STEPS steps, read from the _DOWN tables);
        # where the portrait shows the teeth's upper part the band continues them from there (no second gum
        # line under the portrait's own teeth)
        shown = 1.0 - min(float(teeth), 1.0)
        scale = ((1.0 - shown) * _DOWN_STEPS / np.maximum(band, 1.0)).astype(np.float32)
        step = d * scale
        step += np.float32(shown * _DOWN_STEPS + 0.5)
        step = np.minimum(np.maximum(step, 0.0, out=step), _DOWN_STEPS, out=step).astype(np.intp)
        across = ((0.55 + 0.45 * slit) * (0.2 + 0.8 * centre)).astype(np.float32)
        light = _DOWN_LIGHT[step]
        # the gaps between teeth, faint (about a pixel at 512x512: darker lines read as a second, drawn row)
        light -= GAP_SHADE * gaps
        light *= across
        # (s * (1 - x) as s - s * x below: an array operation less each)
        sv, wl = seen[r0:r1], w_lips[r0:r1]
        a = inside * sv
        sv -= a
        if u1:
            # Under the portrait's own teeth (the middle of parted lips) the band continues them from
            # `top - lead`: the lips' inner-edge ring there would draw a lip-coloured line between the
            # portrait's teeth and the painted ones (two rows of teeth); towards the corners, and under closed
            # lips, the ring stays (only the columns where `upper` is under 1 change).
            own = inside[:, u0:u1] * (np.float32(1.0) - upper[u0:u1])
            a[:, u0:u1] += own - own * (sv[:, u0:u1] + a[:, u0:u1])  # (sv + a: what `seen` was)
            wl[:, u0:u1] -= wl[:, u0:u1] * own
        wl += a * _DOWN_GUM[step]
        a *= light
        w_teeth[r0:r1] = a

    # low in the cavity, the rows near the lower lip: the lower incisors' tips, faintly (mostly hidden), in
    # front of the tongue; the tongue a rounded hump only on wider openings, dim, lighter towards the front,
    # darker to its sides
    show = _ramp(opened, 0.3, 0.9)
    faint = 0.15 * _ramp(opened, 0.5, 1.1)
    # both lie in the middle columns (the tongue's hump ends at |cx| ~0.9) and under the tongue's top there
    cols = np.flatnonzero(centre > 0.2)
    if show > 0.0 and len(cols):
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        mid, g = centre[c0:c1], gap[c0:c1]
        rise = (0.12 + 0.16 * show) * np.sqrt(mid * 1.25 - 0.25)  # the tongue's height, of the gap
        above_lip = (g * rise).astype(np.float32)
        low_reach = max(1.0, 0.035 * unit)
        r0 = max(int((bottom_y[c0:c1] - np.maximum(above_lip, low_reach)).min()) - 1, 0)
        d, s = depth[r0:, c0:c1], seen[r0:, c0:c1]
        if faint > 0.0:  # (s * (1 - x) as s - s * x: an array operation less per layer)
            low = d * np.float32(1.0 / low_reach)
            low -= (g * (1.0 / low_reach) - 1.0).astype(np.float32)
            low = _unit_clip(low)
            low *= (faint * mid * mid).astype(np.float32)
            low *= s
            s -= low
            low *= np.float32(0.75)
            w_teeth[r0:, c0:c1] += low
        # down the tongue, 0 at its top to 1 at the lower lip, in steps of the _INTO tables
        per = (_INTO_STEPS / np.maximum(above_lip, 1.0)).astype(np.float32)
        step = d * per
        step -= ((g - above_lip) * per - 0.5).astype(np.float32)
        step = np.minimum(np.maximum(step, 0.0, out=step), _INTO_STEPS, out=step).astype(np.intp)
        tongue = (_INTO_COVER * np.float32(0.85 * show))[step]
        tongue *= s
        s -= tongue
        tongue *= _INTO_LIGHT[step]
        tongue *= (0.5 + 0.5 * mid).astype(np.float32)
        w_tongue[r0:, c0:c1] = tongue

    # the cavity behind it all: light comes in through the opening, so the back of the mouth (high, behind
    # the teeth) and the corners (the cheeks' shadow) are darkest, the floor of the mouth a little lit
    # (from 0.3 high under the teeth to 1.5 by the lower lip, down the opening from a tenth of it: a range
    # a third as wide read as one flat dark shape)
    lit = depth * (1.0 / 0.9 / gap)
    lit -= np.float32(0.1 / 0.9 - 0.25)
    lit = np.minimum(np.maximum(lit, 0.25, out=lit), 1.25, out=lit)
    lit *= (1.2 * (0.35 + 0.65 * np.sqrt(centre))).astype(np.float32)  # (x 1.2: 0.3 .. 1.5)
    seen *= lit
    colour = cv2.transform(cv2.merge([w_lips, w_teeth, w_tongue, seen]), palette.colours.T)
    # the weights sum to at most 1 but the cavity's (at most 1.5 of a colour 0.3 of the lips): inside 0..255
    fade = np.float32(min(1.0, (opening - 0.02) / 0.08))
    alpha = np.minimum(cover * (fade + fade), fade, out=cover)  # (min(2 cover, 1) x fade: fade is >= 0)
    region = image[y0:y1, x0:x1, :3]
    # a frame is blended in bytes (rounded, saturated); a float field warped like a frame (the tests' ramps) in
    # floats
    if region.dtype == np.uint8:
        colour = cv2.convertScaleAbs(colour)
    region[...] = cv2.blendLinear(colour, np.ascontiguousarray(region), alpha, np.float32(1.0) - alpha)
    return y0, y1, x0, x1
