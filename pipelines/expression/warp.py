"""Landmark-driven face warps: expression parameters -> landmark displacements -> a smooth dense image warp.

Independent of any engine: the preview engine animates faces with them and the diffusion engines pre-condition
their reference frames with the upper-face part (brows, eyes, cheeks).

Method
- Every parameter moves a few named mesh landmarks ("movers") by a displacement proportional to the parameter, in
  the face's own frame (x along the eye line, y down the face) and in units of the inter-ocular distance, so the
  same numbers work at any image size and head roll.
- The displacement of any pixel is a normalised Gaussian blend of the movers' displacements,
  `F(p) = sum_i w_i(p) d_i / max(sum_j w_j(p), 1)`, where "anchor" landmarks with zero displacement take part in the
  denominator (so the nose stays put while the lip under it moves). F is linear in the parameters, so for a given
  face every parameter's field is computed once (a "basis", on a coarse grid) and a frame costs one weighted sum.
- Each field lives in a local patch (eyes+brows, mouth+jaw) and is multiplied by a window that is 1 inside and
  falls smoothly to exactly 0 at the patch border: no seam can appear, pixels outside the patches are untouched.
- The image is resampled backwards (cv2.remap); the inverse of the forward field is found with a few fixed-point
  steps B = -F(p + B), each a remap of the small coarse field.
- The lips are the one place where the face tears: an opening mouth splits the inner-lip line. The mouth patch has
  two fields, one for everything above the inner lips and one for everything below; each output pixel takes the
  field of its side of the displaced lower inner lip. The opening between the lips is then painted by
  `mouth_fill` (pipelines.expression.mouth_interior: a shaded cavity, upper teeth, a tongue, in the face's own colours).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from pipelines.expression.mouth_interior import MouthPalette, mouth_fill, palette_of, teeth_share
from pipelines.expression.track import PARAMS
from pipelines.face import mesh

MOUTH_PARAMS: tuple[str, ...] = ("mouth_open", "mouth_width", "mouth_round", "mouth_closure")
"""Speech-driven mouth parameters (from the speech MouthTrack): opening 0..1, width -1..1, rounding 0..1, closure 0..1."""
UPPER_PARAMS: tuple[str, ...] = (
    "brow_raise",
    "brow_lower",
    "brow_inner",
    "eye_open",
    "blink",
    "smile_cheeks",
)
"""What `regions="upper"` animates: brows, eyes and the cheek lift of a smile, never the mouth."""
WARP_PARAMS: tuple[str, ...] = (
    "smile",
    "brow_raise",
    "brow_lower",
    "brow_inner",
    "eye_open",
    "blink",
    "jaw",
    *MOUTH_PARAMS,
)

# Landmarks the shared mesh table does not name, used only as extra movers/anchors for smooth fields.
_LEFT_CREASE = (247, 30, 29, 27, 28, 56, 190)  # skin fold above the image-left upper lid, outer -> inner
_RIGHT_CREASE = (467, 260, 259, 257, 258, 286, 414)
_LEFT_CHEEK = (205, 50, 207, 187, 36, 101, 118)
_RIGHT_CHEEK = (425, 280, 427, 411, 266, 330, 347)
_FOREHEAD_LEFT = (104, 69, 108)
_FOREHEAD_RIGHT = (333, 299, 337)
_BELOW_LEFT_EYE = (25, 110, 24, 23, 22, 26, 112)
_BELOW_RIGHT_EYE = (255, 339, 254, 253, 252, 256, 341)
INVERSE_STEPS = 3
COEF_STEP = 1.0 / 512  # parameters are quantised to this: invisible, and an unchanged patch can be reused
_EXACT = ("blink", "eye_open")  # narrow lid fields that must reach their targets (see _Patch._basis)
_LOWER_CHIN = (152, 148, 176, 377, 400, 175, 171, 396, 199, 200)


def _lids(contour: tuple[int, ...]) -> tuple[list[int], list[int]]:
    # mesh eye contours: outer corner, lower lid (7), inner corner, upper lid (7, inner -> outer)
    lower = list(contour[1:8])
    upper = list(contour[9:16])[::-1]
    return upper, lower


def _lips() -> tuple[list[int], list[int], list[int], list[int]]:
    # mesh lip contours: corner, lower lip (9 points), corner, upper lip (9 points, back towards the first corner)
    outer, inner = mesh.LIPS_OUTER, mesh.LIPS_INNER
    return list(outer[11:20]), list(outer[1:10]), list(inner[11:20]), list(inner[1:10])


class _Movers:
    """The control points of one parameter: landmark indices, their displacements (face units: x along the eyes,
    y down) and Gaussian widths (pixels), added a group at a time and joined into arrays once, when the field is
    computed (a video persona builds a rig, and so these, every frame)."""

    def __init__(self):
        self._groups: list[tuple] = []

    def add(self, idx, dx, dy, sigma):
        self._groups.append((idx, dx, dy, sigma))

    def __bool__(self) -> bool:
        return any(len(g[0]) for g in self._groups)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices (n,), displacements (n, 2) float64, sigmas (n,) float64)."""
        sizes = [len(idx) for idx, *_ in self._groups]
        idx = np.concatenate([np.asarray(g[0], np.int64).reshape(-1) for g in self._groups])
        disp = np.concatenate(
            [
                np.stack([np.broadcast_to(dx, n), np.broadcast_to(dy, n)], 1)
                for (_, dx, dy, _), n in zip(self._groups, sizes, strict=True)
            ]
        ).astype(np.float64)
        sigma = np.repeat([float(g[3]) for g in self._groups], sizes)
        return idx, disp, sigma


class FaceRig:
    """Warp bases of one face (its 478 landmarks in one image); reused for every frame that shows this face.

    `regions`: "all" or "upper" (brows, eyes, cheek lift only; the mouth patch is not built at all).
    `detail`: fields are sampled every inter-ocular distance / (80 * detail) pixels around the eyes and / (25 *
    detail) around the mouth; 0.5 halves the cost of building a rig (one per frame for a video persona) at the
    price of slightly softer lid motion.
    """

    def __init__(
        self,
        landmarks: np.ndarray,
        image_shape: Sequence[int],
        regions: str = "all",
        detail: float = 1.0,
        palette: MouthPalette | None = None,
    ):
        if regions not in ("all", "upper"):
            raise ValueError(f"regions must be 'all' or 'upper', got {regions!r}")
        self.detail = float(detail)
        pts = np.asarray(landmarks, np.float64)[:, :2]
        self.points = pts
        self.regions = regions
        self.height, self.width = int(image_shape[0]), int(image_shape[1])
        left_eye = pts[list(mesh.LEFT_EYE)].mean(0)
        right_eye = pts[list(mesh.RIGHT_EYE)].mean(0)
        self.unit = float(np.linalg.norm(right_eye - left_eye))  # inter-ocular distance in pixels
        ex = (right_eye - left_eye) / self.unit
        self.axes = np.stack([ex, np.array([-ex[1], ex[0]])])  # rows: face x, face y (down)
        self.patches: list[_Patch] = []
        up_in, low_in = _lips()[2:]
        rest_gap = float(np.median(((pts[low_in] - pts[up_in[::-1]]) @ self.axes[1])[2:7])) / self.unit
        # a portrait that already shows its teeth keeps them; a closed mouth gets painted teeth, parted lips the
        # part of the teeth they do not show
        self.closed_at_rest = rest_gap < 0.04
        self.teeth = teeth_share(rest_gap)  # of the upper teeth, what the portrait does not show at rest
        self._canvas: tuple | None = None  # apply_moved's copy of the source with the eye patch painted
        self._lid_skins: tuple[np.ndarray | None, dict] = (None, {})
        self.palette = palette  # read from the first image applied unless given (a video's, once per persona)
        self._build_upper()
        if regions == "all":
            self._build_mouth()

    def warm(self) -> None:
        """Compute every parameter's field now instead of at its first use: a rig made once for many renders
        (a still persona, rendered in forked children) then hands each render its fields ready."""
        for patch in self.patches:
            for basis in (patch.upper, patch.lower):
                for name in basis.names if basis is not None else ():
                    basis.get(name)

    # ---- parameter rows ---------------------------------------------------------------------------------
    def coefficients(self, params: Mapping[str, float] | np.ndarray) -> dict[str, float]:
        """Parameters (a dict, or a row aligned with PARAMS) -> the amounts of each warp basis."""
        if not isinstance(params, Mapping):
            row = np.asarray(params, np.float64).ravel()
            params = dict(zip(PARAMS, row, strict=False))
        p = {k: round(float(params.get(k, 0.0)) / COEF_STEP) * COEF_STEP for k in WARP_PARAMS}
        blink = min(max(p["blink"], 0.0), 1.0)
        smile = p["smile"]
        coef = {
            "brow_raise": p["brow_raise"],
            "brow_lower": p["brow_lower"],
            "brow_inner": p["brow_inner"],
            # a closing lid overrides widening/narrowing, so lids never cross
            "eye_open": p["eye_open"] * (1.0 - blink),
            "blink": blink,
            "smile_cheeks": smile,
        }
        if self.regions == "all":
            coef.update(
                smile=smile,
                mouth_open=min(max(p["mouth_open"] + p["jaw"], 0.0), 1.3),
                mouth_width=p["mouth_width"],
                mouth_round=p["mouth_round"],
                mouth_closure=p["mouth_closure"] * (1.0 - min(1.0, p["mouth_open"] + p["jaw"])),
            )
        return coef

    def displaced_landmarks(self, params) -> np.ndarray:
        """(478, 2) landmark positions after the warp: each point moved by the field where it lies."""
        return self._moved(self.coefficients(params))

    def _moved(self, coef: dict[str, float]) -> np.ndarray:
        out = self.points.copy()
        for patch in self.patches:
            out += patch.landmark_shift(coef)
        return out

    def apply(self, image: np.ndarray, params, in_place: bool = False) -> np.ndarray:
        """The warped image (a new array; the input is not modified unless `in_place`).

        in_place: the image is the caller's own copy, warped in place and returned (saves a copy of the frame).
        Only for `regions="upper"`: its one patch reads all its pixels before it writes; the mouth patch would
        read pixels the eye patch has already moved where the two overlap."""
        if in_place and self.regions != "upper":
            raise ValueError("in_place needs regions='upper'")
        coef = self.coefficients(params)
        out = image if in_place else image.copy()
        for patch in self.patches:
            patch.apply(image, out, coef)
        if coef["blink"] > 0.05:
            eyelid_fill(out, self.points, self.unit, coef["blink"], self._skins(image))
        if self.regions == "all" and coef["mouth_open"] > 0.02:
            top, bottom = self.patches[-1].gap_lines(coef)
            mouth_fill(out, top, bottom, self.unit, coef["mouth_open"], self.teeth, self._palette(image))
        if self.regions == "all" and coef["mouth_closure"] > 0.5 and not self.closed_at_rest:
            # lips pressed over the teeth of a smiling portrait: the squeezed teeth leave a bright sliver,
            # a real closed mouth shows a dark seam there
            seam = self.patches[-1].split_line(coef)
            lip_seam(out, seam, self.unit, (coef["mouth_closure"] - 0.5) * 2)
        return out

    def apply_moved(
        self,
        source: np.ndarray,
        params,
        matrix: np.ndarray,
        size: tuple[int, int],
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The warped face moved by `matrix` (2x3, source -> output pixels) into an output of `size` (w, h), for
        a caller that passes the very same, unmodified `source` on every call (a still persona): what
        `cv2.warpAffine(self.apply(source, params), matrix, size)` shows, with the mouth resampled once.

        The eye patch and the closed-lid fill are painted into a copy of the source kept between calls: brows,
        lids and cheeks hold still for many frames (blinks are short), so that copy changes only when their
        amounts do. The mouth moves with the speech nearly every frame: its pixels go from that copy straight
        into the output through the composed map W(M^-1 q), W the mouth's backward warp, one cv2.remap of the
        rectangle it moves; every other output pixel is one cv2.warpAffine of the copy (the head motion). The
        inner mouth and the lip seam are then painted in output pixels, along the lines the matrix moved.
        Every output pixel is written: `out`, the previous call's result, may be passed back to be reused."""
        w, h = size
        if out is None or out.shape != (h, w, *source.shape[2:]):
            out = np.empty((h, w, *source.shape[2:]), source.dtype)
        matrix = np.asarray(matrix, np.float64)
        coef = self.coefficients(params)
        mouth = self.patches[-1] if self.regions == "all" else None
        moving = mouth.moving(coef) if mouth is not None else None
        canvas = self._upper_canvas(source, coef, mouth if moving is not None else None)
        rect = _moved_rect(mouth, moving[2], matrix, size) if moving is not None else None
        if rect is not None:
            x0, y0, x1, y1 = rect
            maps = mouth.moved_maps(moving, coef, matrix, rect)
            cv2.remap(
                canvas, maps, None, cv2.INTER_LINEAR, dst=out[y0:y1, x0:x1], borderMode=cv2.BORDER_REFLECT101
            )
        else:
            x0 = y0 = x1 = y1 = 0
        # the rest of the frame: up to four bands around the rectangle, each a plain move of the copy
        for bx0, by0, bx1, by1 in ((0, 0, w, y0), (0, y1, w, h), (0, y0, x0, y1), (x1, y0, w, y1)):
            if bx1 > bx0 and by1 > by0:
                shifted = matrix.copy()
                shifted[:, 2] -= (bx0, by0)
                cv2.warpAffine(
                    canvas,
                    shifted,
                    (bx1 - bx0, by1 - by0),
                    dst=out[by0:by1, bx0:bx1],
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT101,
                )
        if mouth is None:
            return out

        def moved(pts: np.ndarray) -> np.ndarray:
            return pts @ matrix[:, :2].T + matrix[:, 2]

        if coef["mouth_open"] > 0.02:
            top, bottom = mouth.gap_lines(coef)
            mouth_fill(
                out,
                moved(top),
                moved(bottom),
                self.unit,
                coef["mouth_open"],
                self.teeth,
                self._palette(source),
            )
        if coef["mouth_closure"] > 0.5 and not self.closed_at_rest:
            seam = mouth.split_line(coef)
            lip_seam(out, moved(seam), self.unit, (coef["mouth_closure"] - 0.5) * 2)
        return out

    def _palette(self, image: np.ndarray) -> MouthPalette:
        """The interior's colours: given, or read from the first image a mouth opens on, then kept."""
        if self.palette is None:
            self.palette = palette_of(image, self.points, self.unit, not self.closed_at_rest)
        return self.palette

    def _skins(self, image: np.ndarray) -> dict:
        """The closed lids' skin, grown from `image`'s once (eyelid_fill fills the dict), then reused."""
        if self._lid_skins[0] is not image:
            self._lid_skins = (image, {})
        return self._lid_skins[1]

    def _upper_canvas(self, source: np.ndarray, coef: dict[str, float], mouth: _Patch | None) -> np.ndarray:
        """`source` with the eye patch warped and the closed lids drawn, and with the box of the `mouth` patch
        (when it moves) put back to the source where the eye patch overlaps it, as `apply` paints them (the
        later patch wins). Kept between calls: the same array is returned while all that stays the same, and
        only what the previous call painted is put back."""
        upper = self.patches[0]
        key = (upper._key(coef), mouth is not None)
        kept = self._canvas  # read once, replaced whole: a render on another thread keeps its own source
        if kept is not None and kept[0] is source and kept[1] == key:
            return kept[2]
        if kept is None or kept[0] is not source:
            canvas = source.copy()
        else:
            canvas = kept[2]
            for y0, y1, x0, x1 in kept[3]:
                canvas[y0:y1, x0:x1] = source[y0:y1, x0:x1]
        painted = [upper.box] if upper.apply(source, canvas, coef, memo=True) else []
        if coef["blink"] > 0.05:
            painted.append(
                eyelid_fill(canvas, self.points, self.unit, coef["blink"], self._skins(source), source)
            )
        if mouth is not None and painted:
            y0, y1, x0, x1 = mouth.box
            canvas[y0:y1, x0:x1] = source[y0:y1, x0:x1]
        self._canvas = (source, key, canvas, [b for b in painted if b is not None])
        return canvas

    # ---- the two patches --------------------------------------------------------------------------------
    def _gap(self, upper, lower) -> np.ndarray:
        return (self.points[lower] - self.points[upper]) @ self.axes.T / self.unit  # face units, per pair

    def _build_upper(self) -> None:
        u = self.unit
        params = {k: _Movers() for k in UPPER_PARAMS}
        anchors: list[int] = [*mesh.NOSE_BRIDGE, mesh.NOSE_TIP, *mesh.NOSE_BOTTOM, *mesh.NOSE_ALAE]
        for contour, crease, below, brow_up, brow_low, cheek, forehead in (
            (
                mesh.LEFT_EYE,
                _LEFT_CREASE,
                _BELOW_LEFT_EYE,
                mesh.LEFT_BROW_UPPER,
                mesh.LEFT_BROW_LOWER,
                _LEFT_CHEEK,
                _FOREHEAD_LEFT,
            ),
            (
                mesh.RIGHT_EYE,
                _RIGHT_CREASE,
                _BELOW_RIGHT_EYE,
                mesh.RIGHT_BROW_UPPER,
                mesh.RIGHT_BROW_LOWER,
                _RIGHT_CHEEK,
                _FOREHEAD_RIGHT,
            ),
        ):
            upper, lower = _lids(contour)
            gap = self._gap(upper, lower)[:, 1]
            gap_px = max(float(np.median(gap)) * u, 2.0)
            lid_sigma = max(0.45 * gap_px, 1.5)
            # profile along the lid: full in the middle, less towards the corners where the lids meet
            profile = np.sin(np.linspace(0.15, np.pi - 0.15, len(upper)))
            corners = [contour[0], contour[8]]
            params["blink"].add(upper, 0.0, 0.86 * gap * np.maximum(profile, 0.5), lid_sigma)
            params["blink"].add(lower, 0.0, -0.14 * gap * profile, lid_sigma)
            params["blink"].add(crease, 0.0, 0.35 * gap * profile, lid_sigma * 1.6)
            params["eye_open"].add(upper, 0.0, -0.35 * gap * profile, lid_sigma)
            params["eye_open"].add(lower, 0.0, 0.12 * gap * profile, lid_sigma)
            params["eye_open"].add(crease, 0.0, -0.15 * gap * profile, lid_sigma * 1.6)
            for k in ("blink", "eye_open"):
                params[k].add(corners, 0.0, 0.0, lid_sigma)
                params[k].add(below, 0.0, 0.0, lid_sigma * 1.5)
            brow = list(brow_up) + list(brow_low)
            inner_sign = (
                1.0 if contour is mesh.LEFT_EYE else -1.0
            )  # +x points from the image-left eye to the other
            w = np.tile(np.linspace(0.0, 1.0, 5), 2)  # 0 at the outer end, 1 at the inner end
            params["brow_raise"].add(brow, 0.0, -0.10, 0.13 * u)
            params["brow_raise"].add(forehead, 0.0, -0.05, 0.15 * u)
            params["brow_raise"].add(crease, 0.0, -0.025, 0.08 * u)
            params["brow_lower"].add(brow, inner_sign * 0.05 * w, 0.045 + 0.05 * w, 0.12 * u)
            params["brow_lower"].add(crease, 0.0, 0.015, 0.08 * u)
            params["brow_inner"].add(brow, inner_sign * 0.015 * w, 0.02 - 0.11 * w, 0.11 * u)
            params["smile_cheeks"].add(cheek, 0.0, -0.045, 0.14 * u)
            params["smile_cheeks"].add(lower, 0.0, -0.02 * profile, lid_sigma * 1.5)
            params["smile_cheeks"].add(below, 0.0, -0.035, 0.1 * u)
            for k in ("brow_raise", "brow_lower", "brow_inner"):
                params[k].add(upper, 0.0, 0.0, lid_sigma)
                params[k].add(lower, 0.0, 0.0, lid_sigma)
            params["smile_cheeks"].add(upper, 0.0, 0.0, lid_sigma)
            anchors += [*corners]
        pts = self.points
        idx = [
            *mesh.LEFT_EYE,
            *mesh.RIGHT_EYE,
            *mesh.LEFT_BROW,
            *mesh.RIGHT_BROW,
            *_LEFT_CHEEK,
            *_RIGHT_CHEEK,
        ]
        x0, y0 = pts[idx].min(0) - 0.35 * u
        x1, y1 = pts[idx].max(0) + 0.35 * u
        self.patches.append(
            _Patch(
                self,
                (x0, y0, x1, y1),
                {k: m for k, m in params.items()},
                anchors,
                None,
                stride=max(1, round(u / (80 * self.detail))),
            )
        )

    def _build_mouth(self) -> None:
        u = self.unit
        pts = self.points
        up_out, low_out, up_in, low_in = _lips()
        corners = list(mesh.MOUTH_CORNERS) + list(mesh.INNER_MOUTH_CORNERS)
        mouth_c = pts[list(mesh.MOUTH_CORNERS)].mean(0)
        half_w = float(np.linalg.norm(pts[mesh.MOUTH_CORNER_RIGHT] - pts[mesh.MOUTH_CORNER_LEFT])) / 2

        def across(ids):  # -1 at the image-left corner .. +1 at the image-right corner
            return np.clip(((pts[ids] - mouth_c) @ self.axes[0]) / half_w, -1.0, 1.0)

        chin = list(_LOWER_CHIN)
        jaw_side = [149, 150, 378, 379]
        jaw_far = [136, 365]
        lip_sigma = 0.1 * u
        up = {k: _Movers() for k in ("smile", *MOUTH_PARAMS)}
        low = {k: _Movers() for k in ("smile", *MOUTH_PARAMS)}
        for side, lips in ((up, (up_out, up_in)), (low, (low_out, low_in))):
            for ids in lips:
                a = across(ids)
                side["smile"].add(ids, 0.05 * a * np.abs(a), -0.10 * np.abs(a) ** 1.5, lip_sigma)
                side["mouth_width"].add(ids, 0.07 * a, 0.0, lip_sigma)
                side["mouth_round"].add(ids, -0.10 * a, 0.0, lip_sigma)
            ac = across(corners)
            side["smile"].add(corners, 0.06 * ac, -0.10, lip_sigma)
            side["mouth_width"].add(corners, 0.07 * ac, 0.0, lip_sigma)
            side["mouth_round"].add(corners, -0.10 * ac, 0.0, lip_sigma)
            side["mouth_open"].add(corners, -0.02 * ac, 0.07, lip_sigma)
            side["smile"].add([*_LEFT_CHEEK[:3], *_RIGHT_CHEEK[:3]], 0.0, -0.05, 0.14 * u)
        bulge = lambda ids: 1.0 - across(ids) ** 2  # noqa: E731 - middle of the lip moves most
        up["mouth_open"].add(up_in, 0.0, -0.07 * bulge(up_in), lip_sigma)
        up["mouth_open"].add(up_out, 0.0, -0.05 * bulge(up_out), lip_sigma)
        up["mouth_round"].add(up_out, 0.0, -0.03 * bulge(up_out), lip_sigma)
        # closure presses the lips together: a mouth that is parted at rest (teeth showing) closes, the two
        # inner lips meeting half way; the lips also thin a little as they press
        pairs_up, pairs_low = up_in[::-1], low_in  # both from the image-left corner to the right one
        rest_gap = np.maximum(((pts[pairs_low] - pts[pairs_up]) @ self.axes[1]) / u, 0.0)
        up["mouth_closure"].add(up_out, 0.0, 0.025 * bulge(up_out) + 0.4 * rest_gap[::-1], lip_sigma)
        up["mouth_closure"].add(pairs_up, 0.0, 0.01 * bulge(pairs_up) + 0.5 * rest_gap, lip_sigma)
        low["mouth_open"].add(low_in, 0.0, 0.06 + 0.2 * bulge(low_in), lip_sigma)
        low["mouth_open"].add(low_out, 0.0, 0.06 + 0.18 * bulge(low_out), lip_sigma)
        low["mouth_open"].add(chin, 0.0, 0.2, 0.15 * u)
        low["mouth_open"].add(jaw_side, 0.0, 0.13, 0.15 * u)
        low["mouth_open"].add(jaw_far, 0.0, 0.05, 0.15 * u)
        low["mouth_round"].add(low_out, 0.0, 0.035 * bulge(low_out), lip_sigma)
        low["mouth_closure"].add(low_out, 0.0, -0.03 * bulge(low_out) - 0.4 * rest_gap, lip_sigma)
        low["mouth_closure"].add(pairs_low, 0.0, -0.01 * bulge(pairs_low) - 0.5 * rest_gap, lip_sigma)
        anchors = [*mesh.NOSE_BOTTOM, *mesh.NOSE_ALAE, mesh.NOSE_TIP, 4, 5, 195]
        idx = [*mesh.LIPS_OUTER, *chin, *jaw_side, *_LEFT_CHEEK[:3], *_RIGHT_CHEEK[:3]]
        x0, y0 = pts[idx].min(0) - np.array([0.3, 0.25]) * u
        x1, y1 = pts[idx].max(0) + np.array([0.3, 0.55]) * u
        split = [mesh.INNER_MOUTH_CORNERS[0], *low_in, mesh.INNER_MOUTH_CORNERS[1]]
        self.patches.append(
            _Patch(
                self,
                (x0, y0, x1, y1),
                up,
                anchors,
                (low, split),
                stride=max(1, round(u / (25 * self.detail))),
            )
        )


class _Patch:
    """One local region: coarse per-parameter forward fields (one set per side for the mouth), window included."""

    def __init__(self, rig: FaceRig, box, movers: dict[str, _Movers], anchors, lower, stride: int):
        x0, y0, x1, y1 = box
        self.x0, self.y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        self.x1, self.y1 = min(rig.width, int(np.ceil(x1))), min(rig.height, int(np.ceil(y1)))
        self.rig = rig
        self.stride = stride
        h, w = self.y1 - self.y0, self.x1 - self.x0
        self.shape = (h, w)
        # coarse sample k sits at pixel k * stride + (stride - 1) / 2: exactly where cv2.resize (pixel-centre
        # convention) puts it when upsampling by `stride`, so upsampling is one resize
        gh, gw = -(-h // stride), -(-w // stride)
        gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float64) * stride + (stride - 1) / 2
        self.origin = np.array([self.x0, self.y0], np.float64) + (stride - 1) / 2
        self.grid = np.stack([gx + self.x0, gy + self.y0], -1)  # (gh, gw, 2) image coordinates of samples
        self.window = self._window(gx, gy, w, h)
        self.names = sorted(movers)
        self.upper = self._basis(movers, anchors)
        self.lower = None
        self.split = None
        if lower is not None:
            low_movers, split = lower
            self.lower = self._basis(low_movers, anchors)
            self.split = split
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.pixels = np.stack([xx + self.x0, yy + self.y0], -1)
        self.cells = (
            np.mgrid[0:gh, 0:gw][::-1].astype(np.float32).transpose(1, 2, 0)
        )  # (x, y) in coarse cells
        self.all_names = tuple(sorted(set(self.upper.names) | set(self.lower.names if self.lower else ())))
        self._memo = None
        self._last_fields: tuple | None = None
        self._last_moving: tuple | None = None
        self.box = (self.y0, self.y1, self.x0, self.x1)
        if self.split is not None:
            self._split_cells = self._cells_of(rig.points[self.split])

    def _window(self, gx, gy, w, h):
        # smoothstep ramp over the outer 18% of the patch on each side, exactly 0 on the border;
        # the last `stride` pixels on each side stay at zero too, so the upsampled field is exactly zero on the
        # patch's outermost pixel rows and columns whatever the grid phase
        def ramp(v, n):
            band = max(0.18 * n, 2.0)
            t = np.clip((np.minimum(v, n - 1 - v) - self.stride) / band, 0.0, 1.0)
            return t * t * (3 - 2 * t)

        return (ramp(gx, w) * ramp(gy, h))[..., None]

    def _basis(self, movers: dict[str, _Movers], anchors) -> _Basis:
        return _Basis(self, {k: m for k, m in movers.items() if m}, anchors)

    def _key(self, coef: dict[str, float]) -> tuple[float, ...]:
        return tuple(coef.get(n, 0.0) for n in self.all_names)

    def fields(self, coef: dict[str, float]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The upper and lower sides' forward fields for these amounts (None where zero); the last pair is kept,
        so the warp, the mouth lines and the landmarks of one frame (and an unchanged next frame) share them."""
        key = self._key(coef)
        last = self._last_fields  # read once, replaced whole: consistent if another thread replaces it
        if last is None or last[0] != key:
            fu = self._field(self.upper, coef)
            fl = self._field(self.lower, coef) if self.lower is not None else None
            last = self._last_fields = (key, fu, fl)
        return last[1], last[2]

    def _field(self, basis: _Basis, coef: dict[str, float]) -> np.ndarray | None:
        f = None
        for name in basis.names:
            c = coef.get(name, 0.0)
            if c != 0.0:
                field_ = basis.get(name)
                f = field_ * c if f is None else f + field_ * c
        return f

    def _inverse(self, forward: np.ndarray, support: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Backward displacement at the coarse samples: B = -F(p + B), a few fixed-point steps.

        `support`: coarse rows and columns (r0, r1, c0, c1) outside which F is zero. Where F is zero at a sample
        so is every step there (B = -F(p + 0) = 0), so only the samples inside are iterated."""
        negative = -forward
        if support is None:
            support = _nonzero_box(forward)
            if support is None:
                return negative
        r0, r1, c0, c1 = support
        box = (slice(r0, r1), slice(c0, c1))
        cells = self.cells[box]
        back = negative[box]
        for _ in range(INVERSE_STEPS):
            m = cv2.scaleAdd(back, 1.0 / self.stride, cells)  # (numpy is slow on a trailing axis of 2)
            back = cv2.remap(negative, m, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out = np.zeros_like(forward)
        out[box] = back
        return out

    def _dense(
        self, back: np.ndarray, y0: int = 0, y1: int | None = None, x0: int = 0, x1: int | None = None
    ):
        """Coarse displacements -> one per pixel of the patch (bilinear), for the patch's rows [y0, y1) and
        columns [x0, x1): only the coarse samples those pixels blend are upsampled (the same values as
        upsampling them all and cutting the box out)."""
        h, w = self.shape
        y1 = h if y1 is None else y1
        x1 = w if x1 is None else x1
        s = self.stride
        if s == 1:
            return back[y0:y1, x0:x1]
        gh, gw = back.shape[:2]
        r0, r1 = max(0, y0 // s - 1), min(gh, (y1 - 1) // s + 2)
        c0, c1 = max(0, x0 // s - 1), min(gw, (x1 - 1) // s + 2)
        block = cv2.resize(back[r0:r1, c0:c1], ((c1 - c0) * s, (r1 - r0) * s), interpolation=cv2.INTER_LINEAR)
        return block[y0 - r0 * s : y1 - r0 * s, x0 - c0 * s : x1 - c0 * s]

    def _cells_of(self, pts: np.ndarray) -> np.ndarray:
        return (pts - self.origin) / self.stride

    def lower_mask(self, coef) -> tuple[np.ndarray, int, int] | None:
        """Where output pixels take the lower lip/jaw side's field (below the displaced lower inner lip), as the
        soft mask of the rows [top, bottom) around that line: rows above are all upper side, rows below all lower.

        Between the mouth corners the sides part sharply (the lips open there); beyond the corners the line
        runs on into the cheeks, where skin does not tear, so the change from one side's field to the other
        widens with the distance from the corner and the lower face moves as one smooth field."""
        if self.split is None:
            return None
        h, w = self.shape
        return _split_mask(self._split_points(coef) - np.array([self.x0, self.y0]), w, h, self.rig.unit)

    def gap_lines(self, coef) -> tuple[np.ndarray, np.ndarray]:
        """The opening the mouth uncovers: the resting lower inner lip carried by the upper side's field (top)
        and by the lower side's field (bottom), corner to corner."""
        pts = self.rig.points[self.split]
        fu = self.fields(coef)[0]
        top = pts + _sample(fu, self._split_cells) if fu is not None else pts.copy()
        bottom = self._split_points(coef)
        top[[0, -1]] = bottom[[0, -1]]  # the corners are shared
        return top, np.maximum(bottom, top * [0, 1] + bottom * [1, 0])

    def split_line(self, coef) -> np.ndarray:
        """The displaced lower inner lip, corner to corner: where the upper and lower sides meet."""
        return self._split_points(coef)

    def _split_points(self, coef) -> np.ndarray:
        pts = self.rig.points[self.split]
        f = self.fields(coef)[1]
        if f is None:
            return pts
        return pts + _sample(f, self._split_cells)

    def landmark_shift(self, coef) -> np.ndarray:
        pts = self.rig.points
        shift = np.zeros_like(pts)
        inside = (
            (pts[:, 0] >= self.x0) & (pts[:, 0] < self.x1) & (pts[:, 1] >= self.y0) & (pts[:, 1] < self.y1)
        )
        fu, fl = self.fields(coef)
        if fu is not None:
            shift[inside] = _sample(fu, self._cells_of(pts[inside]))
        if self.lower is not None:
            if fl is not None:
                lower_ids = self._lower_side(pts)
                sel = inside & lower_ids
                shift[sel] = _sample(fl, self._cells_of(pts[sel]))
        return shift

    def _lower_side(self, pts) -> np.ndarray:
        # landmarks below the inner-lip line, plus the lower inner lip itself (which sits on the line)
        split = self.rig.points[self.split]
        xs = np.interp(pts[:, 0], split[:, 0], split[:, 1], left=np.inf, right=np.inf)
        below = pts[:, 1] > xs + 0.5
        below[self.split[1:-1]] = True
        below[list(mesh.INNER_MOUTH_CORNERS)] = False
        return below

    def moving(self, coef) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int, int, int]] | None:
        """The coarse backward fields of the two sides (None where zero) and the box of the patch they move
        (y0, y1, x0, x1), or None when nothing moves; the last answer is kept."""
        key = self._key(coef)
        last = self._last_moving
        if last is None or last[0] != key:
            fu, fl = self.fields(coef)
            back_up = self._inverse(fu, self.upper.support(coef)) if fu is not None else None
            back_low = self._inverse(fl, self.lower.support(coef)) if fl is not None else None
            box = self._active_box(back_up, back_low) if fu is not None or fl is not None else None
            last = self._last_moving = (key, None if box is None else (back_up, back_low, box))
        return last[1]

    def apply(self, src: np.ndarray, out: np.ndarray, coef, memo: bool = False) -> bool:
        """Paint the warped patch into `out` (its whole box); False when nothing moves and nothing is painted."""
        key = self._key(coef)
        kept = self._memo
        if memo and kept is not None and kept[0] is src and kept[1] == key:
            self._write(src, out, *kept[2])
            return True
        moving = self.moving(coef)
        if moving is None:
            return False
        back_up, back_low, (by0, by1, bx0, bx1) = moving
        pixels = self.pixels[by0:by1, bx0:bx1]
        if self.lower is None:
            maps = cv2.add(pixels, self._dense(back_up, by0, by1, bx0, bx1))
        else:
            # above the band: the upper side's field; below it: the lower side's; in it, blended by the mask
            m, top, bottom = self.lower_mask(coef)
            up_end, low_start = min(max(top, by0), by1), min(max(bottom, by0), by1)
            maps = np.empty((by1 - by0, bx1 - bx0, 2), np.float32)
            zero = np.zeros_like(back_up if back_up is not None else back_low)
            back_up = zero if back_up is None else back_up
            back_low = zero if back_low is None else back_low
            if by0 < up_end:
                rows = slice(0, up_end - by0)
                cv2.add(pixels[rows], self._dense(back_up, by0, up_end, bx0, bx1), dst=maps[rows])
            if low_start < by1:
                rows = slice(low_start - by0, by1 - by0)
                cv2.add(pixels[rows], self._dense(back_low, low_start, by1, bx0, bx1), dst=maps[rows])
            if up_end < low_start:
                up = self._dense(back_up, up_end, low_start, bx0, bx1)
                low = self._dense(back_low, up_end, low_start, bx0, bx1)
                mask = m[up_end - top : low_start - top, bx0:bx1]
                rows = slice(up_end - by0, low_start - by0)
                # up + mask (low - up), with the mask doubled for both coordinates (numpy is slow to
                # broadcast over a trailing axis of 2)
                blend = low - up
                blend *= cv2.merge([mask, mask])
                blend += up
                blend += pixels[rows]
                maps[rows] = blend
        patch = cv2.remap(src, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        self._write(src, out, by0, bx0, patch)
        if memo:
            self._memo = (src, key, (by0, bx0, patch))
        return True

    def _write(self, src: np.ndarray, out: np.ndarray, by0: int, bx0: int, patch: np.ndarray) -> None:
        # the whole patch takes the source's pixels (where patches overlap, the later one wins), the moving box
        # its resampled ones
        if patch.shape[:2] != self.shape:
            out[self.y0 : self.y1, self.x0 : self.x1] = src[self.y0 : self.y1, self.x0 : self.x1]
        y0, x0 = self.y0 + by0, self.x0 + bx0
        out[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch

    def moved_maps(self, moving, coef, matrix: np.ndarray, rect) -> np.ndarray:
        """(h, w, 2) float32 source positions of the output pixels in `rect` (x0, y0, x1, y1) for an image moved
        by `matrix` (2x3, source -> output) after this patch's warp: M^-1 q moved by the backward field there
        (`moving`, this patch's answer for these amounts).

        Composed on a coarse grid of output pixels at the patch's stride, one sample beyond the rectangle on
        every side, and upsampled bilinearly as `apply` upsamples its fields: M^-1 q is linear, so that part is
        upsampled exactly. The mouth's two sides are composed apart and joined per pixel by the split mask,
        drawn in output pixels along the moved lower inner lip, so the lips part as sharply as in `apply`."""
        back_up, back_low, _ = moving
        x0, y0, x1, y1 = rect
        w, h = x1 - x0, y1 - y0
        s = self.stride
        gw, gh = -(-w // s) + 2, -(-h // s) + 2
        # sample k sits at output pixel x0 + (k - 1) s + (s - 1) / 2: where cv2.resize puts it upsampling by s,
        # shifted by one sample
        gx = (x0 + (np.arange(gw) - 1) * s + (s - 1) / 2)[None, :]
        gy = (y0 + (np.arange(gh) - 1) * s + (s - 1) / 2)[:, None]
        inv = cv2.invertAffineTransform(matrix)
        # (arithmetic on (h, w, 2) arrays goes through OpenCV: numpy is slow to broadcast over a trailing 2)
        at = cv2.merge(
            [
                (inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]).astype(np.float32),
                (inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]).astype(np.float32),
            ]
        )
        cells = cv2.transform(at, np.array([[1.0, 0.0, -self.origin[0]], [0.0, 1.0, -self.origin[1]]]) / s)
        upper = cv2.add(at, _sample_grid(back_up, cells)) if back_up is not None else at
        if self.lower is None:
            return _upsampled(upper, s, 0, h, w)
        lower = cv2.add(at, _sample_grid(back_low, cells)) if back_low is not None else at
        line = self.split_line(coef) @ matrix[:, :2].T + matrix[:, 2] - (x0, y0)
        m, top, bottom = _split_mask(line, w, h, self.rig.unit)
        maps = np.empty((h, w, 2), np.float32)
        if top > 0:
            maps[:top] = _upsampled(upper, s, 0, top, w)
        if bottom < h:
            maps[bottom:] = _upsampled(lower, s, bottom, h, w)
        if top < bottom:
            # up (1 - m) + low m in one pass, the mask applied to both coordinates
            cv2.blendLinear(
                _upsampled(upper, s, top, bottom, w),
                _upsampled(lower, s, top, bottom, w),
                1.0 - m,
                m,
                dst=maps[top:bottom],
            )
        return maps

    def _active_box(self, *coarse: np.ndarray | None) -> tuple[int, int, int, int] | None:
        """Rows and columns of the patch (y0, y1, x0, x1) outside which every upsampled displacement is under
        1/128 pixel: cv2.remap rounds positions to 1/32 pixel, so there it copies the source exactly."""
        limit = 1.0 / 128
        moving = None
        for c in coarse:
            if c is not None:
                m = np.abs(c).reshape(c.shape[0], -1)
                moving = m if moving is None else np.maximum(moving, m)
        rows = np.flatnonzero(moving.max(1) > limit)
        if len(rows) == 0:
            return None
        cols = np.flatnonzero(moving.max(0).reshape(-1, 2).max(1) > limit)
        # a pixel blends the samples less than one stride away
        s = self.stride
        h, w = self.shape
        return (
            max(0, (int(rows[0]) - 1) * s),
            min(h, (int(rows[-1]) + 2) * s),
            max(0, (int(cols[0]) - 1) * s),
            min(w, (int(cols[-1]) + 2) * s),
        )


class _Basis:
    """The forward fields of one side of a patch, per parameter, each computed the first time it is needed
    (a video persona builds a rig per frame and only pays for the parameters that frame uses)."""

    def __init__(self, patch: _Patch, movers: dict[str, _Movers], anchors):
        self.patch = patch
        self.movers = movers
        self.names = tuple(sorted(movers))
        rig = patch.rig
        self.anchor_pts = rig.points[np.array([int(i) for i in anchors])]
        self.anchor_sigma = 0.08 * rig.unit
        self._anchor_w: np.ndarray | None = None
        self._fields: dict[str, np.ndarray] = {}
        self._boxes: dict[str, tuple[int, int, int, int] | None] = {}

    def _gauss(self, a: np.ndarray, b: np.ndarray, sigma) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * np.asarray(sigma) ** 2))

    def get(self, name: str) -> np.ndarray:
        f = self._fields.get(name)
        if f is None:
            f = self._fields[name] = self._compute(self.movers[name], name in _EXACT)
            self._boxes[name] = _nonzero_box(f)
        return f

    def support(self, coef: dict[str, float]) -> tuple[int, int, int, int] | None:
        """Coarse rows and columns (r0, r1, c0, c1) holding every sample where these amounts' field is not
        zero (the union of the used fields' own boxes), or None where it is zero everywhere."""
        box = None
        for name in self.names:
            if coef.get(name, 0.0) != 0.0:
                self.get(name)
                own = self._boxes[name]
                if own is not None:
                    box = own if box is None else _union(box, own)
        return box

    def _splat(self, pts: np.ndarray, sigma: np.ndarray, values: np.ndarray | None):
        """Sum of Gaussians (and of Gaussian-weighted values) on the coarse grid, each cut off at 3 sigma, so a
        narrow lid control costs a few hundred samples rather than the whole patch.

        All controls at once (a video persona computes these every frame): each control's Gaussian on a box of
        the largest control's size, zero outside its own box, summed into the grid by np.bincount, which adds
        the controls into each sample in their order, as adding them one by one would: the same sums."""
        patch = self.patch
        gh, gw = patch.grid.shape[:2]
        origin = patch.origin
        sigma = np.broadcast_to(sigma, len(pts))
        reach = 3 * sigma[:, None]
        lo = np.maximum(np.floor((pts - reach - origin) / patch.stride).astype(int), 0)
        hi = np.minimum(np.ceil((pts + reach - origin) / patch.stride).astype(int) + 1, [gw, gh])
        used = (hi > lo).all(1)
        if not used.any():
            return np.zeros((gh, gw)), (np.zeros((gh, gw, 2)) if values is not None else None)
        lo, hi, pts, sigma = lo[used], hi[used], pts[used], sigma[used]
        kx, ky = (hi - lo).max(0)
        cols = lo[:, :1] + np.arange(kx)  # (n, kx) sample columns of each control's box (padded)
        rows = lo[:, 1:] + np.arange(ky)
        xs = origin[0] + patch.stride * cols - pts[:, :1]
        ys = origin[1] + patch.stride * rows - pts[:, 1:]
        sg = sigma[:, None, None]
        w = np.exp(-(ys[:, :, None] ** 2 + xs[:, None, :] ** 2) / (2 * sg * sg))
        inside = (rows < hi[:, 1:])[:, :, None] & (cols < hi[:, :1])[:, None, :]
        w[~inside] = 0.0
        at = np.where(inside, rows[:, :, None] * gw + cols[:, None, :], 0).ravel()
        wsum = np.bincount(at, w.ravel(), gh * gw).reshape(gh, gw)
        if values is None:
            return wsum, None
        values = np.asarray(values)[used]
        vsum = np.stack(
            [np.bincount(at, (w * values[:, c, None, None]).ravel(), gh * gw) for c in (0, 1)], -1
        ).reshape(gh, gw, 2)
        return wsum, vsum

    def _compute(self, m: _Movers, exact: bool) -> np.ndarray:
        rig = self.patch.rig
        if self._anchor_w is None:
            self._anchor_w = self._splat(self.anchor_pts, np.float64(self.anchor_sigma), None)[0]
        idx, disp, s = m.arrays()
        c = rig.points[idx]
        amounts = disp @ rig.axes * rig.unit  # face units -> image pixels
        if exact:
            # lids: solve for the blend amounts that make the field pass through every control's displacement
            # (neighbouring controls otherwise water each other down and a blink stops half way)
            k = self._gauss(c, c, s[None])
            kd = np.maximum(k.sum(1) + self._gauss(c, self.anchor_pts, self.anchor_sigma).sum(1), 1.0)
            amounts = np.linalg.solve(k + 0.02 * np.eye(len(c)), amounts * kd[:, None])
        # each parameter's own controls (its zero-displacement ones included) plus the shared anchors form the
        # denominator, so a wide brow control never dilutes a narrow lid control
        wsum, vsum = self._splat(c, s, amounts)
        f = vsum / np.maximum(wsum + self._anchor_w, 1.0)[..., None]
        return (f * self.patch.window).astype(np.float32)


def _split_mask(line: np.ndarray, w: int, h: int, unit: float) -> tuple[np.ndarray, int, int]:
    """`_Patch.lower_mask` over a (h, w) block of pixels, `line` (the displaced lower inner lip, corner to
    corner) in the block's own pixel coordinates."""
    k = max(3, int(unit * 0.05) | 1)
    order = np.argsort(line[:, 0])
    xs = np.arange(w, dtype=np.float64)
    at = np.interp(xs, line[order, 0], line[order, 1])
    beyond = np.maximum(np.maximum(line[:, 0].min() - xs, xs - line[:, 0].max()), 0.0)
    half = k / 2 + np.minimum(0.9 * beyond, 0.45 * unit)  # half width of the change, in rows
    top = min(max(math.floor((at - half).min()) - 1, 0), h)
    bottom = min(max(math.ceil((at + half).max()) + 2, top), h)
    # t = (y - at) / (2 half) + 0.5 as y * scale + offset per column, then a smoothstep, in place (the band
    # spans up to a pupil distance of rows across the whole patch)
    scale = (0.5 / half).astype(np.float32)[None, :]
    offset = (0.5 - at * (0.5 / half)).astype(np.float32)[None, :]
    t = np.arange(top, bottom, dtype=np.float32)[:, None] * scale
    t += offset
    np.clip(t, 0.0, 1.0, out=t)
    step = t * np.float32(-2.0)
    step += np.float32(3.0)
    step *= t
    step *= t
    return step, top, bottom


def _moved_rect(
    patch: _Patch, active: tuple[int, int, int, int], matrix: np.ndarray, size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The output pixels (x0, y0, x1, y1) whose source position lies within a pixel of the patch's moving box
    `active` (y0, y1, x0, x1 in the patch), None if none: outside it the patch leaves the source as it is."""
    by0, by1, bx0, bx1 = active
    xa, xb, ya, yb = patch.x0 + bx0 - 1, patch.x0 + bx1, patch.y0 + by0 - 1, patch.y0 + by1
    pts = np.array([(xa, ya), (xb, ya), (xa, yb), (xb, yb)], np.float64) @ matrix[:, :2].T + matrix[:, 2]
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 2, size)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _sample_grid(field_: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Bilinear samples of a coarse (gh, gw, 2) field at a grid (h, w, 2) of fractional cell coordinates, zero
    beyond the field (nothing moves outside its patch)."""
    return cv2.remap(field_, cells, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _upsampled(coarse: np.ndarray, s: int, r0: int, r1: int, w: int) -> np.ndarray:
    """Rows [r0, r1) and columns [0, w) of the pixels of a coarse grid (one sample beyond the pixels on every
    side, see `_Patch.moved_maps`) upsampled bilinearly by `s`: only the coarse rows those pixels blend
    are resized."""
    if s == 1:
        return coarse[r0 + 1 : r1 + 1, 1 : w + 1]
    gh, gw = coarse.shape[:2]
    c0, c1 = max(0, (r0 + s) // s - 1), min(gh, (r1 + s - 1) // s + 2)
    block = cv2.resize(coarse[c0:c1], (gw * s, (c1 - c0) * s), interpolation=cv2.INTER_LINEAR)
    return block[r0 + s - c0 * s : r1 + s - c0 * s, s : s + w]


def _nonzero_box(field_: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows and columns (r0, r1, c0, c1) of a (h, w, 2) field holding all its non-zero samples, or None."""
    size = np.abs(field_).reshape(field_.shape[0], -1)
    rows = np.flatnonzero(size.max(1) > 0)
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(size.max(0).reshape(-1, 2).max(1) > 0)
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _sample(field_: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Bilinear samples of a coarse (gh, gw, 2) field at fractional cell coordinates (n, 2)."""
    if len(cells) == 0:
        return np.zeros((0, 2))
    m = cells.astype(np.float32).reshape(-1, 1, 2)
    return cv2.remap(field_, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(
        -1, 2
    )


def eyelid_fill(
    image: np.ndarray,
    rest: np.ndarray,
    unit: float,
    blink: float,
    skins: dict | None = None,
    skin_source: np.ndarray | None = None,
) -> tuple[int, int, int, int] | None:
    """Draw each eye's upper lid down to where the blink has carried it, in place; returns the box
    (y0, y1, x0, x1) holding what it painted.

    The lid is opaque skin over the band between the resting upper lid and the displaced one, with the lashes
    as a soft dark line along its moving edge: below that edge the eye is the warped eye, above it the lid,
    never a see-through mix of the two (a fading fill shows the iris through the lid). The skin is grown in from
    the skin around the eye (inpainting), so its tone matches. `rest`: the landmarks before the warp. `skins`: a
    dict kept by the caller between calls on the same face, which holds each eye's grown-in skin (the costly
    part) after the first call. `skin_source`: the picture the skin is grown from (default `image`); the
    unwarped one, the same for every frame of a still, so the skin does not depend on which frame blinked
    first (a resumed render grows the same skin as a whole one)."""
    if blink <= 0.05:
        return None
    rest = np.asarray(rest, np.float64)[:, :2]
    painted = None
    for contour in (mesh.LEFT_EYE, mesh.RIGHT_EYE):
        upper, lower = _lids(contour)  # both outer -> inner
        corners = [contour[0], contour[8]]
        # the lid's moving edge: the resting upper lid carried towards the lower lid, to where the blink field
        # takes them to meet (the warped landmarks themselves zigzag a little; a lid edge is smooth)
        down = rest[upper] + (0.86 * min(blink, 1.0)) * (rest[lower] - rest[upper])
        edge = np.concatenate([rest[[corners[0]]], down, rest[[corners[1]]]])
        lid = np.concatenate([rest[[corners[0]]], rest[upper], rest[[corners[1]]], down[::-1]])
        # the box holds the whole resting eye, whatever the blink: the same for every call
        eye = np.concatenate([rest[[corners[0]]], rest[lower], rest[[corners[1]]], rest[upper][::-1]])
        pad = int(0.12 * unit) + 3
        x0, y0 = np.floor(eye.min(0)).astype(int) - pad - [0, int(0.015 * unit) + 1]
        x1, y1 = np.ceil(eye.max(0)).astype(int) + pad
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        h, w = y1 - y0, x1 - x0
        mask = np.zeros((h, w), np.float32)
        # the lid reaches a little above its resting line, so no sliver of the open eye's edge stays above it
        grown = lid - [x0, y0] - [0.0, 0.015 * unit]
        cv2.fillPoly(mask, [np.round(grown * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
        mask = cv2.GaussianBlur(mask, (3, 3), 0)
        region = image[y0:y1, x0:x1, :3].astype(np.float32)  # RGB, or the colour of an RGBA image
        skin = None if skins is None else skins.get(contour)
        if skin is None or skin.shape[:2] != (h, w):
            grown_from = image if skin_source is None else skin_source
            rgb = np.ascontiguousarray(grown_from[y0:y1, x0:x1, :3])
            # the whole resting opening (and a little above it) grown in: good for every blink amount
            hole = np.zeros((h, w), np.uint8)
            cv2.fillPoly(hole, [np.round(eye - [x0, y0] - [0.0, 0.015 * unit]).astype(np.int32)], 1)
            cv2.fillPoly(hole, [np.round(eye - [x0, y0]).astype(np.int32)], 1)
            hole = cv2.dilate(hole, np.ones((5, 5), np.uint8))
            skin = _grown_skin(rgb, hole, unit)
            if skins is not None:
                skins[contour] = skin
        lash = np.zeros((h, w), np.float32)
        line = np.round((edge - [x0, y0]) * 4).astype(np.int32)
        thick = max(1, int(0.02 * unit * (0.5 + 0.5 * min(blink, 1.0))))
        cv2.polylines(lash, [line], False, 1.0, thickness=thick, lineType=cv2.LINE_AA, shift=2)
        lash = cv2.GaussianBlur(lash, (3, 3), 0) * 0.65
        # the lid darkens a little towards its edge (its curve turns away from the light)
        ys = np.arange(h, dtype=np.float32)[:, None]
        edge_y = np.interp(np.arange(w) + x0, edge[:, 0], edge[:, 1]).astype(np.float32)[None, :] - y0
        shade = np.clip(1.0 - (edge_y - ys) / max(0.06 * unit, 1.0), 0.0, 1.0)
        colour = skin * (1.0 - 0.08 * shade[..., None]) * (1.0 - lash[..., None] * 0.7)
        alpha = np.maximum(mask, lash)[..., None]
        image[y0:y1, x0:x1, :3] = (region + alpha * (colour - region) + 0.5).astype(np.uint8)
        painted = _union(painted, (y0, y1, x0, x1))
    return painted


# Lid skin is grown at a scale where the pupils are at most this many pixels apart: TELEA inpainting costs the
# hole's area times its radius squared, ~46 ms an eye on a 1080x1920 video persona (pupils ~250 px apart, a new
# rig and so a new skin every blinking frame) against ~3 ms grown at this scale and scaled up (skin grown in from
# around the eye is smooth: the lashes and the shading are drawn on it at full size). A 512x512 portrait's face
# (pupils ~123 px apart) is grown at full size, as before.
SKIN_UNIT = 128.0


def _grown_skin(rgb: np.ndarray, hole: np.ndarray, unit: float) -> np.ndarray:
    """`rgb` with its `hole` (uint8 mask) grown in from around it (TELEA), float32."""
    scale = min(1.0, SKIN_UNIT / unit)
    if scale == 1.0:
        return cv2.inpaint(rgb, hole, max(3, int(0.05 * unit)), cv2.INPAINT_TELEA).astype(np.float32)
    h, w = hole.shape
    size = (max(4, round(w * scale)), max(4, round(h * scale)))
    small_hole = cv2.resize(hole, size, interpolation=cv2.INTER_NEAREST)
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    grown = cv2.inpaint(small, small_hole, max(3, int(0.05 * unit * scale)), cv2.INPAINT_TELEA)
    return cv2.resize(grown, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _union(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def lip_seam(
    image: np.ndarray, line: np.ndarray, unit: float, strength: float
) -> tuple[int, int, int, int] | None:
    """A soft dark line where pressed lips meet (corner to corner through `line`), in place; returns the box
    (y0, y1, x0, x1) it painted."""
    line = np.asarray(line, np.float64)
    pad = int(0.05 * unit) + 3
    x0, y0 = np.floor(line.min(0)).astype(int) - pad
    x1, y1 = np.ceil(line.max(0)).astype(int) + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    seam = np.zeros((y1 - y0, x1 - x0), np.float32)
    pts = np.round((line - [x0, y0]) * 4).astype(np.int32)
    cv2.polylines(seam, [pts], False, 1.0, thickness=max(1, int(0.012 * unit)), lineType=cv2.LINE_AA, shift=2)
    seam = cv2.GaussianBlur(seam, (3, 3), 0) * (0.6 * float(np.clip(strength, 0.0, 1.0)))
    region = image[y0:y1, x0:x1, :3].astype(np.float32)
    # region + seam (0.35 region - region), the seam tripled per channel rather than broadcast (slow in numpy)
    out = region * 0.35
    out -= region
    out *= cv2.merge([seam, seam, seam])
    out += region
    out += 0.5
    image[y0:y1, x0:x1, :3] = out.astype(np.uint8)
    return y0, y1, x0, x1


def warp_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    params: Mapping[str, float] | np.ndarray,
    regions: str = "all",
) -> np.ndarray:
    """Warp one face: `params` is a dict (names from PARAMS and MOUTH_PARAMS) or a row aligned with PARAMS.

    regions="upper" animates brows, eyes and cheeks only (what the diffusion engines pre-condition); for many
    frames of the same face build a `FaceRig` once and call `rig.apply(image, params)`.
    """
    return FaceRig(landmarks, image.shape, regions).apply(image, params)
