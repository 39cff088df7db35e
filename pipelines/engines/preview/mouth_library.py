"""Video personas speak with their own mouths: a library of the footage's mouths, chosen by shape.

The classic sample-based approach ("Video Rewrite", Bregler et al. 1997), reduced to what runs on a CPU in
real time:
- library: every source frame with a face is an entry; its shape is the inner-lip opening and the mouth width
  (MediaPipe landmarks, in units of the pupil distance), its appearance the frame's lower face (held as a small
  JPEG crop, see `MouthStore`);
- targets: the speech's opening curve is mapped onto the footage's own openings by quantiles, ranked among the
  speaking frames (the render opens as wide, as often, as the person does while speaking; silence maps to the
  footage's most closed mouth); width likewise;
- choice: per window of output frames, a Viterbi path over the entries whose cost is the distance to the
  target shape (weighted up where the target is a closed mouth: pauses close) plus a cost for every jump in
  the footage (continuing to the next source frame is free, holding one costs a little), so the chosen
  mouths mostly play as short runs of real motion; where it jumps, that frame cross-fades the new mouth with
  the continuation of the previous one;
- paste: the entry's lower face is moved into the current frame by the similarity transform between the two
  frames' nose and eye corners (points that do not move with the mouth), colour-matched on its border, and
  blended in under a feathered mask covering both frames' mouths, so neither the current frame's own mouth
  nor a seam shows.
The footage's own mouth motion is replaced, not warped over: the render's mouth follows the new speech.

Beyond the footage's widest mouth: the speech asks for an inner-lip gap in pupil distances (`opening`, the
gap a photo is drawn with). A frame asking more than the library's widest entry opens shows its chosen entry
opened further by the expression warp (`pipelines.expression.warp.FaceRig` on the pasted mouth's landmarks),
by the difference, its uncovered cavity painted in the colours of the footage's widest mouth. The difference
grows from 0 at the widest entry's opening, so nothing pops at the threshold (`beyond_widest`; the record
counts those frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.expression.mouth_interior import MouthPalette, palette_of
from pipelines.expression.warp import FaceRig
from pipelines.face import mesh
from pipelines.speech.mouth import OPEN_GAP

STABLE = (1, 2, 4, 5, 195, 197, 98, 327, 33, 133, 263, 362)  # nose and eye corners
# the lower face that is replaced: lips, the skin around them and the front of the chin (not the jaw outline)
REGION = (*mesh.LIPS_OUTER, 18, 200, 199, 57, 287, 43, 273, 106, 335, 182, 406, 164, 167, 393)
WINDOW = 250  # output frames per Viterbi window: memory bounded whatever the speech's length
MIN_ENTRIES = 12
MIN_RANGE = 0.04  # footage whose openings span less than this (pupil distances) shows no speech to reuse
HOLD_COST = 0.5
JUMP_COST = 5.0
WIDTH_WEIGHT = 0.3
SILENCE_WEIGHT = 4.0
QUIET = 0.1  # speech openings under this share of the speech's widest count as a closed mouth
CLOSED_BAND = 0.25  # targets within this many standard deviations of the most closed entry count as closed
_INNER_PAIRS = ((82, 87), (13, 14), (312, 317))
# the warp rig of an opened-further mouth is built per frame: coarse fields, as for videos
EXTEND_DETAIL = 0.5
EXTEND_SLACK = 0.005  # pupil distances: asks this little beyond the widest entry are not worth a warp


def mouth_shapes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(opening, width) per frame of (n, 478, 2) landmarks, in pupil distances: the mean inner-lip gap at the
    middle of the mouth, and the corner-to-corner width."""
    p = np.asarray(points, np.float64)
    unit = np.maximum(np.linalg.norm(p[:, mesh.RIGHT_PUPIL] - p[:, mesh.LEFT_PUPIL], axis=-1), 1e-6)
    gap = np.mean([np.linalg.norm(p[:, b] - p[:, a], axis=-1) for a, b in _INNER_PAIRS], axis=0)
    width = np.linalg.norm(p[:, mesh.MOUTH_CORNER_RIGHT] - p[:, mesh.MOUTH_CORNER_LEFT], axis=-1)
    return gap / unit, width / unit


@dataclass(frozen=True)
class MouthLibrary:
    frames: np.ndarray  # (n,) source frame of each entry
    opening: np.ndarray  # (n,) its inner-lip opening
    width: np.ndarray  # (n,) its mouth width

    @property
    def size(self) -> int:
        return len(self.frames)

    @property
    def widest(self) -> float:
        return float(self.opening.max())

    def facts(self) -> dict:
        """What the record says about the library; when its widest mouth opens less than speech can ask for
        (OPEN_GAP: the widest opening a photo is drawn with), how wider openings are drawn."""
        widest = round(self.widest, 3)
        out = {
            "entries": self.size,
            "opening_min": round(float(self.opening.min()), 3),
            "opening_max": widest,
        }
        if widest < OPEN_GAP:
            out["extended"] = (
                f"the footage's widest mouth opens {widest:.2f} pupil distances, speech up to {OPEN_GAP:.2f}: "
                "frames asking wider show their mouth opened further by the warp, its cavity painted"
            )
        return out


def build_library(points: np.ndarray, found: np.ndarray) -> tuple[MouthLibrary | None, str | None]:
    """The library of a video persona's frames, or (None, why) when the footage cannot give one."""
    frames = np.flatnonzero(found)
    if len(frames) < MIN_ENTRIES:
        return None, f"the footage has a face in {len(frames)} frames (at least {MIN_ENTRIES} needed)"
    opening, width = mouth_shapes(points[frames])
    spread = float(np.percentile(opening, 95) - np.percentile(opening, 5))
    if spread < MIN_RANGE:
        return None, (
            f"the footage's mouth barely moves (openings span {spread:.3f} pupil distances, "
            f"{MIN_RANGE} needed)"
        )
    return MouthLibrary(frames, opening, width), None


def target_shapes(
    library: MouthLibrary, opening: np.ndarray, width: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The speech's (opening, width) curves mapped onto the footage's own values by quantiles: each value goes
    to the library's quantile at the share of values strictly under it, so the widest speech maps to the
    footage's widest. Openings rank among the speaking frames only (the footage is a person talking, whatever
    share of the speech is pauses: counting the pauses would push every spoken frame up the footage's scale),
    and silence maps to the footage's most closed mouth."""

    def ranked(curve: np.ndarray, values: np.ndarray) -> np.ndarray:
        share = np.searchsorted(np.sort(curve), curve, side="left") / max(len(curve) - 1, 1)
        return np.quantile(values, np.clip(share, 0.0, 1.0))

    opening = np.asarray(opening, np.float64)
    t_open = np.full(len(opening), float(np.min(library.opening)))
    # the tail of an opening fading into a pause counts as closed: ranked among the speaking frames, a tiny
    # value would otherwise map to a mid opening of the footage
    live = opening >= QUIET * max(float(opening.max(initial=0.0)), 1e-9)
    live &= opening > 0
    if live.any():
        t_open[live] = ranked(opening[live], library.opening)
    width = np.asarray(width, np.float64)
    return t_open, ranked(width, library.width) if len(width) else width


def choose_entries(
    library: MouthLibrary, t_open: np.ndarray, t_width: np.ndarray, start: int = 0
) -> np.ndarray:
    """Entry index per output frame from `start` on (Viterbi per WINDOW frames; the windows are fixed, so a
    render resumed at any frame chooses what a full render chose)."""
    n = len(t_open)
    first = (start // WINDOW) * WINDOW
    out = [
        _viterbi(library, t_open[a : a + WINDOW], t_width[a : a + WINDOW]) for a in range(first, n, WINDOW)
    ]
    path = np.concatenate(out) if out else np.zeros(0, np.int64)
    return path[start - first :]


def _viterbi(library: MouthLibrary, t_open: np.ndarray, t_width: np.ndarray) -> np.ndarray:
    s_open = max(float(np.std(library.opening)), 1e-3)
    s_width = max(float(np.std(library.width)), 1e-3)
    data = ((library.opening[None] - t_open[:, None]) / s_open) ** 2
    data += WIDTH_WEIGHT * ((library.width[None] - t_width[:, None]) / s_width) ** 2
    # a pause must close the mouth (a run of real motion carried into silence reads as talking over nothing):
    # where the target is the footage's closed mouth, missing it costs SILENCE_WEIGHT times more, and an entry
    # that is not closed costs a jump more, so no run of real motion is carried into a pause for its continuity
    # (a half-open entry that a cheap run follows was otherwise chosen to open a pause)
    closed_below = float(np.min(library.opening)) + CLOSED_BAND * s_open
    closed = t_open <= closed_below
    data[closed] *= SILENCE_WEIGHT
    data[np.ix_(closed, library.opening > closed_below)] += JUMP_COST
    n, m = data.shape
    # entry e continues entry e - 1 when they are consecutive source frames
    follows = np.zeros(m, bool)
    follows[1:] = np.diff(library.frames) == 1
    cost = data[0].copy()
    back = np.zeros((n, m), np.int32)
    idx = np.arange(m)
    for k in range(1, n):
        best = int(np.argmin(cost))
        options = np.stack([cost + HOLD_COST, np.full(m, cost[best] + JUMP_COST), np.full(m, np.inf)])
        options[2, 1:] = np.where(follows[1:], cost[:-1], np.inf)
        choice = np.argmin(options, 0)
        back[k] = np.choose(choice, [idx, np.full(m, best), idx - 1])
        cost = options[choice, idx] + data[k]
    path = np.empty(n, np.int64)
    path[-1] = int(np.argmin(cost))
    for k in range(n - 1, 0, -1):
        path[k - 1] = back[k, path[k]]
    return path


class MouthStore:
    """Each library entry's lower face as a JPEG crop (quality 95) with its landmarks, held for the render."""

    def __init__(self) -> None:
        self._crops: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}

    def add(self, j: int, frame: np.ndarray, points: np.ndarray) -> None:
        x0, y0, x1, y1 = crop_box(points, frame.shape)
        crop = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
        self._crops[j] = (cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], (x0, y0))

    def crop(self, j: int) -> tuple[np.ndarray, tuple[int, int]]:
        data, origin = self._crops[j]
        return cv2.imdecode(data, cv2.IMREAD_COLOR_RGB), origin  # (the same pixels as BGR then swapped)


def jump_sources(library: MouthLibrary, path: np.ndarray, previous: int | None) -> np.ndarray:
    """Per output frame of `path`, the source frame that continues the previous frame's mouth where the path
    jumps to another moment of the footage (cross-faded with the new one for that frame), else -1.
    `previous`: the entry chosen for the frame before the path's first (None at the render's start)."""
    frames = library.frames
    before = np.r_[-1 if previous is None else previous, path[:-1]]
    out = np.full(len(path), -1, np.int64)
    for k, (e, p) in enumerate(zip(path, before, strict=True)):
        if p < 0 or frames[e] in (frames[p], frames[p] + 1):
            continue
        follow = p + 1 if p + 1 < len(frames) and frames[p + 1] == frames[p] + 1 else p
        out[k] = frames[follow]
    return out


class LibraryMouths:
    """The mouths of one render, from its first frame `start` on: each output frame's library entry (chosen for
    the speech's opening and width curves), pasted into a frame's geometry, cross-faded where the path jumps,
    and opened further where the speech asks for more than the library's widest mouth.
    `points`: landmarks of every source frame of the library, in the coordinates of the store's crops.
    `opening`: the inner-lip gap the speech asks for per output frame, in pupil distances."""

    def __init__(
        self,
        library: MouthLibrary,
        store: MouthStore,
        points: np.ndarray,
        opening: np.ndarray,
        width: np.ndarray,
        start: int = 0,
    ):
        self.library, self.store, self.points, self.start = library, store, points, start
        t_open, t_width = target_shapes(library, opening, width)
        first = max(start - 1, 0)  # the frame before `start` too: a jump at `start` cross-fades from it
        path = choose_entries(library, t_open, t_width, first)
        previous = int(path[0]) if start > 0 else None
        self.path = path[start - first :]
        self.fades = jump_sources(library, self.path, previous)
        self.beyond = beyond_widest(library, opening)[start:]  # how much further each frame's mouth opens
        self._palette: MouthPalette | None = None

    def paste(self, frame: np.ndarray, frame_points: np.ndarray, k: int) -> np.ndarray:
        """`frame` (modified in place and returned) with output frame k's mouth."""
        entry = int(self.library.frames[self.path[k - self.start]])
        fade = int(self.fades[k - self.start])
        if fade >= 0:
            was, was_origin = self.store.crop(fade)
            paste_mouth(frame, frame_points, was, was_origin, self.points[fade])
        crop, origin = self.store.crop(entry)
        local = np.asarray(self.points[entry], np.float64) - origin
        matrix = alignment(local, frame_points)
        paste_mouth(frame, frame_points, crop, origin, self.points[entry], 0.5 if fade >= 0 else 1.0, matrix)
        beyond = float(self.beyond[k - self.start])
        if beyond > 0.0 and matrix is not None:
            self._open_further(frame, local @ matrix[:, :2].T + matrix[:, 2], beyond)
        return frame

    def _open_further(self, frame: np.ndarray, points: np.ndarray, beyond: float) -> None:
        """The pasted mouth (landmarks `points`, in the frame) opened `beyond` pupil distances further by the
        expression warp, as a photo's mouth is: the warp's opening per unit measured on this mouth's rig."""
        rig = FaceRig(points, frame.shape, detail=EXTEND_DETAIL, palette=self.palette())
        rest = float(mouth_shapes(points[None])[0][0])
        opened = float(mouth_shapes(rig.displaced_landmarks({"mouth_open": 1.0})[None])[0][0])
        amount = min(beyond / max(opened - rest, 0.05), 1.3)
        frame[...] = rig.apply(frame, {"mouth_open": amount})

    def palette(self) -> MouthPalette:
        """The interior's colours for every opened-further frame: read once from the library's widest mouth
        (its lips, skin and the teeth it shows), so they never flicker and a resumed render paints the same."""
        if self._palette is None:
            widest = int(self.library.frames[int(np.argmax(self.library.opening))])
            crop, origin = self.store.crop(widest)
            local = np.asarray(self.points[widest], np.float64) - origin
            unit = float(np.linalg.norm(local[mesh.RIGHT_PUPIL] - local[mesh.LEFT_PUPIL]))
            self._palette = palette_of(crop, local, unit, teeth_visible=True)
        return self._palette


def beyond_widest(library: MouthLibrary, opening: np.ndarray) -> np.ndarray:
    """Per frame, how much further than the library's widest mouth the speech asks it to open (pupil
    distances; 0 where it asks no more, or too little more to be worth a warp)."""
    beyond = np.asarray(opening, np.float64) - library.widest
    beyond[beyond < EXTEND_SLACK] = 0.0
    return beyond


def alignment(crop_points: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """The similarity transform (2x3) taking a crop's landmarks (in its own coordinates) onto a frame's, fitted on
    the points that do not move with the mouth (nose, eye corners); None when it cannot be fitted."""
    src = np.asarray(crop_points, np.float64)[list(STABLE)]
    matrix, _ = cv2.estimateAffinePartial2D(
        src, np.asarray(points, np.float64)[list(STABLE)], method=cv2.LMEDS
    )
    return matrix


def crop_box(points: np.ndarray, shape) -> tuple[int, int, int, int]:
    pts = np.asarray(points, np.float64)
    unit = float(np.linalg.norm(pts[mesh.RIGHT_PUPIL] - pts[mesh.LEFT_PUPIL]))
    region = pts[list(REGION)]
    x0, y0 = np.floor(region.min(0) - 0.45 * unit).astype(int)
    x1, y1 = np.ceil(region.max(0) + 0.45 * unit).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _feathered(mask: np.ndarray, sigma: float) -> np.ndarray:
    """`mask` blurred by a Gaussian of `sigma`. A large sigma (a 1080x1920 face: ~18 px, a 109-tap kernel) is
    blurred at a fraction of the size, where it is ~3-6 px, and scaled back up: a feather is smooth, and this is
    several times cheaper. A 512x512 face's (sigma ~9) is blurred as it is."""
    step = int(sigma // 6)
    if step < 2:
        return cv2.GaussianBlur(mask, (0, 0), sigma)
    h, w = mask.shape
    small = cv2.resize(mask, (-(-w // step), -(-h // step)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / step)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def paste_mouth(
    frame: np.ndarray,
    points: np.ndarray,
    crop: np.ndarray,
    origin: tuple[int, int],
    crop_points: np.ndarray,
    weight: float = 1.0,
    matrix: np.ndarray | None = None,
) -> np.ndarray:
    """`frame` (modified in place and returned) with the crop's mouth moved into its geometry and blended in
    (`weight` < 1: partly, for a cross-fade). `matrix`: the crop's `alignment` when the caller has it."""
    pts = np.asarray(points, np.float64)
    src = np.asarray(crop_points, np.float64) - origin
    if matrix is None:
        matrix = alignment(src, pts)
    if matrix is None:
        return frame
    unit = float(np.linalg.norm(pts[mesh.RIGHT_PUPIL] - pts[mesh.LEFT_PUPIL]))
    moved = src[list(REGION)] @ matrix[:, :2].T + matrix[:, 2]
    hull = cv2.convexHull(np.concatenate([moved, pts[list(REGION)]]).astype(np.float32))[:, 0]
    sigma = 0.07 * unit
    pad = int(3 * sigma) + 2
    x0, y0 = np.maximum(np.floor(hull.min(0)).astype(int) - pad, 0)
    x1, y1 = np.ceil(hull.max(0)).astype(int) + pad
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return frame
    h, w = y1 - y0, x1 - x0
    mask = np.zeros((h, w), np.float32)
    # the hull shrunk by the feather's reach, so the blend ends inside what both frames show
    centre = hull.mean(0)
    inner = centre + (hull - centre) * 0.96 - [x0, y0]
    cv2.fillPoly(mask, [np.round(inner * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    mask = _feathered(mask, sigma)
    m = matrix.copy()
    m[:, 2] -= [x0, y0]
    warped = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    region = frame[y0:y1, x0:x1]
    # lighting differs between the two moments of the footage: match the colour on the blend's border
    ring = cv2.inRange(mask, 0.05, 0.6)
    if cv2.countNonZero(ring) > 20:
        gain = np.array(cv2.mean(region, ring)[:3]) / np.maximum(cv2.mean(warped, ring)[:3], 1.0)
        warped = cv2.multiply(warped, (*np.clip(gain, 0.8, 1.25), 0.0))
    alpha = mask * np.float32(weight)
    # OpenCV's per-pixel blend of the two uint8 pictures: one pass where float arrays took six
    region[...] = cv2.blendLinear(warped, region, alpha, 1.0 - alpha)
    return frame
