"""The CPU preview engine: the persona's own pixels moved by landmark-driven warps.

prepare (cached): for a still portrait, a face-centred crop at the output size (default 512x512, with a margin
for head motion) and its 478 landmarks; for a video, the face track (landmarks and a face-found flag per source
frame at the job fps) — the video's frames are decoded again at render time. A still's warp rig is built with
every field computed, and the engine keeps its last few prepared personas in memory: the jobs of a batch that
share a persona (each rendered in a forked child) start with the rig ready.

render: every output frame k is computed from per-frame curves alone (the expression track, the mouth curves
of the speech), never from the previous frame, so `render(start=k)` gives exactly the frames a full render gives
from k on. Per frame: the mouth (opening, width, rounding, closure from `pipelines.speech.mouth`) and the
expression parameters drive `pipelines.expression.warp.FaceRig` (local patch warps, inner-mouth fill, closed-lid
fill); for stills, idle head motion then moves the whole frame by a small similarity transform inside the margin
(in the same resampling as the mouth warp: `FaceRig.apply_moved`).

Video personas: the source plays forwards then backwards (ping-pong) when the speech is longer (held JPEG-compressed
in memory for that, see `_render_video`); it keeps its own
head motion (no synthetic motion is added). Source frames where no face was found pass through unchanged, and
the warp fades out over `FADE_FRAMES` frames around them rather than cutting (pipelines.face.blend).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipelines.cache import sha256_file
from pipelines.engines.base import ArrayCache, Frame, Progress, RenderSettings, loop_frame
from pipelines.engines.preview.mouth_library import (
    LibraryMouths,
    MouthLibrary,
    MouthStore,
    beyond_widest,
    build_library,
)
from pipelines.errors import InputError, RenderError
from pipelines.expression.track import PARAMS, ExpressionTrack
from pipelines.expression.warp import FaceRig
from pipelines.face.blend import passthrough_crossfade
from pipelines.face.mesh import mouth_opening
from pipelines.face.pick import pick_key
from pipelines.media.video_in import open_source
from pipelines.speech.mouth import OPEN_GAP, mouth_curves
from pipelines.speech.track import Speech

DEFAULT_SIZE = (512, 512)
FADE_FRAMES = 4
VIDEO_DETAIL = 0.5  # a video persona builds a warp rig per frame: coarser fields make that affordable
HEAD_SHIFT = 0.9  # head translation per unit sin(angle), in inter-ocular distances
# (the mouth library is built from these arrays, not cached); 3: a still's measured gaps (photo_gaps)
PREPARE_VERSION = "preview-prepare-3"
RECENT_PERSONAS = 4  # prepared personas kept in memory: a batch's jobs mostly share a few
# A video persona without a mouth library warps its footage's mouth, which already moves: the speech's opening
# adds this share of the warp's full range (measured against real speakers saying the same audio, issue 21).
# A photo's opening is drawn in absolute terms instead (`photo_mouth`).
OPEN_SCALE = 0.72
_IDX = {name: i for i, name in enumerate(PARAMS)}


@dataclass
class PreviewPrepared:
    kind: str  # "image" or "video"
    size: tuple[int, int]  # output (width, height)
    margin: int  # still: border around the output inside `frame`
    points: np.ndarray  # (n_source, 478, 2) in frame coordinates
    found: np.ndarray  # (n_source,) bool
    frame: np.ndarray | None = None  # still: (h + 2 margin, w + 2 margin, 3) uint8
    source: Path | None = None  # video
    fps: float = 25.0
    rig: FaceRig | None = None  # still: the portrait's warp rig, every field computed
    mouths: MouthLibrary | None = None  # video: the footage's own mouths (None: the mouth is warped)
    mouths_note: str | None = None  # why there is no library (video, or a photo's mouths: clip)
    # photo with a `mouths:` clip: the clip, its entries' crops (photo scale and colours) and their landmarks
    mouth_clip: Path | None = None
    mouth_store: MouthStore | None = None
    mouth_points: np.ndarray | None = None
    gaps: np.ndarray | None = None  # still: the gap QC measures on the portrait opened to each of OPEN_LEVELS

    @property
    def n_source(self) -> int:
        return int(self.found.shape[0])


class PreviewEngine:
    """Engine "preview": CPU, no weights, ~real-time x10 and more on a laptop."""

    name = "preview"
    # CPU only, no CUDA context or OpenMP pool: its render can run in a forked child (pipelines.ahead)
    forkable = True

    def __init__(self, device: str = "cpu", **_options: Any):
        self.device = device  # always the CPU; accepted so every engine is created alike
        # Built in this process and kept: a render forked from it starts with the rig's fields already
        # computed (~30 ms per job otherwise, before the first frame).
        self._recent: OrderedDict[str, PreviewPrepared] = OrderedDict()
        self._rendered: tuple | None = None  # the last render's (prepared, speech, settings), for describe()

    # ---- prepare --------------------------------------------------------------------------------------------
    def prepare(self, persona: Any, settings: RenderSettings, cache: ArrayCache) -> PreviewPrepared:
        source = Path(persona.source)
        if not source.is_file():
            raise InputError(source, "source", "file not found")
        kind = getattr(persona, "source_kind", None) or _kind_of(source)
        size = tuple(settings.size) if settings.size else None
        pick = getattr(persona, "face", None)  # which face of several is the persona's (None: the largest)
        clip = getattr(persona, "mouths", None) if kind == "image" else None  # a photo's talking clip
        clip_key = f"|mouths {sha256_file(clip)} {settings.fps}" if clip is not None else ""
        key = hashlib.sha256(
            f"{PREPARE_VERSION}|{sha256_file(source)}|{kind}|{size}|{settings.fps if kind == 'video' else ''}"
            f"{pick_key(pick)}{clip_key}".encode()
        ).hexdigest()[:32]
        prepared = self._recent.pop(key, None) or self._prepared(
            key, source, kind, size, settings, cache, pick
        )
        if clip is not None and prepared.mouth_clip is None:
            _add_clip_mouths(prepared, Path(clip), key, settings.fps, cache)
        self._recent[key] = prepared
        while len(self._recent) > RECENT_PERSONAS:
            self._recent.popitem(last=False)
        return prepared

    @staticmethod
    def _prepared(
        key: str, source: Path, kind: str, size, settings: RenderSettings, cache, pick=None
    ) -> PreviewPrepared:
        if kind == "image":
            out_size = size or DEFAULT_SIZE
            arrays = cache.get_or_compute("preview", key, lambda: _prepare_still(source, out_size, pick))
            points = arrays["points"].astype(np.float64)
            rig = FaceRig(points[0], arrays["frame"].shape)
            rig.warm()
            return PreviewPrepared(
                "image",
                out_size,
                int(arrays["margin"][0]),
                points,
                arrays["found"].astype(bool),
                frame=arrays["frame"],
                rig=rig,
                gaps=arrays["gaps"].astype(np.float64),
            )
        arrays = cache.get_or_compute(
            "preview", key, lambda: _prepare_video(source, settings.fps, size, pick=pick)
        )
        points, found = arrays["points"].astype(np.float64), arrays["found"].astype(bool)
        mouths, note = build_library(points, found)
        return PreviewPrepared(
            "video",
            (int(arrays["size"][0]), int(arrays["size"][1])),
            0,
            points,
            found,
            source=source,
            fps=settings.fps,
            mouths=mouths,
            mouths_note=note,
        )

    def describe(self) -> dict[str, Any]:
        """For the record: where the last prepared video persona's mouths come from."""
        if not self._recent:
            return {}
        prep = next(reversed(self._recent.values()))
        if prep.kind != "video":
            if prep.mouth_clip is None:
                return {"mouths": "painted interior (photo persona)"}
            if prep.mouths is None:
                return {
                    "mouths": f"painted interior (photo persona; no mouths from its clip: {prep.mouths_note})"
                }
            source = f"the persona's mouths: clip {prep.mouth_clip.name}"
            return {"mouths": {"source": source, **prep.mouths.facts(), **self._extended(prep)}}
        if prep.mouths is None:
            return {"mouths": f"warped (no mouth library: {prep.mouths_note})"}
        source = "the persona video's own mouths"
        return {"mouths": {"source": source, **prep.mouths.facts(), **self._extended(prep)}}

    def _extended(self, prep: PreviewPrepared) -> dict[str, int]:
        """How many frames of the last render of `prep` showed its widest mouth opened further (computed again
        here, in the process that writes the record: the render itself may have run in a forked child)."""
        if self._rendered is None or self._rendered[0] is not prep or prep.mouths is None:
            return {}
        _, speech, settings = self._rendered
        beyond = beyond_widest(prep.mouths, _asked_gap(speech, settings))
        return {"extended_frames": int(np.count_nonzero(beyond)), "frames": len(beyond)}

    def frame_size(self, prepared: PreviewPrepared) -> tuple[int, int]:
        return prepared.size

    def face_point(self, prepared: PreviewPrepared) -> tuple[float, float] | None:
        """The persona's face's centre in the first frame that shows it, as fractions of the frame (QC measures
        the person there: a photo is reframed around the picked face, so the pick's own terms do not apply)."""
        found = np.flatnonzero(prepared.found)
        if not len(found):
            return None
        x, y = prepared.points[found[0]].mean(axis=0) - prepared.margin
        return float(x / prepared.size[0]), float(y / prepared.size[1])

    # ---- render ---------------------------------------------------------------------------------------------
    def render(
        self,
        prepared: PreviewPrepared,
        speech: Speech,
        expression: ExpressionTrack,
        settings: RenderSettings,
        progress: Progress | None = None,
        start: int = 0,
    ) -> Iterator[Frame]:
        self._rendered = (prepared, speech, settings)  # (here, not in the frames' generator: see _extended)
        return self._frames(prepared, speech, expression, settings, progress, start)

    def _frames(self, prepared, speech, expression, settings, progress, start) -> Iterator[Frame]:
        n = speech.n_frames
        if expression.n_frames != n:
            raise RenderError(f"expression track has {expression.n_frames} frames, the speech {n}")
        if not 0 <= start <= n:
            raise ValueError(f"start {start} outside 0..{n}")
        mouth = mouth_curves(speech)
        gap = _asked_gap(speech, settings, mouth)
        curves = np.stack([gap, mouth.width, mouth.round, mouth.closure], 1).astype(np.float64)
        if prepared.kind == "image":
            frames = self._render_still(prepared, expression, curves, start, n)
        else:
            frames = self._render_video(prepared, expression, curves, start, n, settings.loop)
        for done, frame in enumerate(frames, 1):
            yield frame
            if progress is not None:
                progress(done)

    @staticmethod
    def _params(expression: ExpressionTrack, curves: np.ndarray, k: int) -> dict[str, float]:
        p = dict(zip(PARAMS, expression.values[k].tolist(), strict=True))
        p["mouth_open"], p["mouth_width"], p["mouth_round"], p["mouth_closure"] = curves[k].tolist()
        return p

    def _render_still(self, prep: PreviewPrepared, expression, curves, start, n) -> Iterator[Frame]:
        rig = prep.rig
        assert rig is not None  # made by prepare for every still
        chosen = None
        if prep.mouths is not None:  # the mouths: clip's mouths are pasted over the photo's, at rest
            assert prep.mouth_store is not None and prep.mouth_points is not None
            chosen = LibraryMouths(
                prep.mouths, prep.mouth_store, prep.mouth_points, curves[:, 0], curves[:, 1], start
            )
            curves = np.zeros_like(curves)
        else:
            curves = photo_mouth(rig, curves, prep.gaps)
        w, h = prep.size
        m = prep.margin
        pivot = (rig.points[list(_PIVOT)].mean(0)).tolist()
        # warped as RGBA: OpenCV's bilinear warps are faster on 4 channels than on 3, the same values
        source = cv2.cvtColor(prep.frame, cv2.COLOR_RGB2RGBA)
        moved = None  # the RGBA frame, every pixel rewritten by each call
        for k in range(start, n):
            params = self._params(expression, curves, k)
            yaw, pitch, roll = (params["head_yaw"], params["head_pitch"], params["head_roll"])
            matrix = cv2.getRotationMatrix2D(pivot, roll, 1.0)
            matrix[0, 2] += HEAD_SHIFT * rig.unit * np.sin(np.radians(yaw)) - m
            matrix[1, 2] += HEAD_SHIFT * rig.unit * np.sin(np.radians(-pitch)) - m
            # the expression warp and the head motion in one resampling of the portrait
            moved = rig.apply_moved(source, params, matrix, (w, h), out=moved)
            out = cv2.cvtColor(moved, cv2.COLOR_RGBA2RGB)
            if chosen is not None:  # pasted after the head motion, into the landmarks it moved
                chosen.paste(out, rig.points @ matrix[:, :2].T + matrix[:, 2], k)
            yield Frame(out, True)

    def _render_video(
        self, prep: PreviewPrepared, expression, curves, start, n, loop: str = "pingpong"
    ) -> Iterator[Frame]:
        src = open_source(prep.source, prep.fps, prep.size)
        # Ping-pong playback needs the source backwards and the decoder only goes forwards, so the source is held
        # for the render, JPEG-compressed (quality 95) in memory: ~0.3 MB per 1080p frame instead of 6 MB, bounded
        # by the persona clip and never by the speech; the mouth library's lower-face crops likewise.
        n_src = min(len(src), prep.n_source)
        library = prep.mouths
        if library is not None and library.frames.max() >= n_src:
            library = None  # (the decoder gave fewer frames than the track: warp rather than guess)
        if start >= n:
            return
        # Only the source frames this render shows are held, and the decoder stops after the last of them (or of
        # the library's entries): a long persona clip under a short speech is not compressed whole (~9 ms a
        # 1080p frame) for the few seconds shown.
        shown = {loop_frame(k, n_src, loop) for k in range(start, n)}
        last = max(max(shown), int(library.frames.max()) if library is not None else -1) + 1
        mouths = MouthStore()
        store: dict[int, np.ndarray] = {}
        for j, f in enumerate(src.frames(0, last)):
            if j in shown:
                store[j] = cv2.imencode(
                    ".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
                )[1]
            if library is not None and prep.found[j]:
                mouths.add(j, f, prep.points[j])
        weights = passthrough_crossfade(prep.found[:n_src], FADE_FRAMES)
        if library is not None:
            chosen = LibraryMouths(library, mouths, prep.points, curves[:, 0], curves[:, 1], start)
        # where the footage's own mouth is warped: the opening as a share of the warp's range (the library above
        # took the gap itself)
        curves = curves.copy()
        curves[:, 0] *= OPEN_SCALE / OPEN_GAP
        for k in range(start, n):
            j = loop_frame(k, n_src, loop)
            # decoded straight to RGB: the same pixels as BGR then swapped, one 6 MB pass less per 1080p frame
            original = cv2.imdecode(store[j], cv2.IMREAD_COLOR_RGB)
            wgt = float(weights[j])
            if wgt <= 0.0:
                yield Frame(original, False)
                continue
            params = self._params(expression, curves, k)
            if library is None:
                image = FaceRig(prep.points[j], original.shape, detail=VIDEO_DETAIL).apply(original, params)
            else:
                image = chosen.paste(original.copy(), prep.points[j], k)
                rig = FaceRig(prep.points[j], original.shape, regions="upper", detail=VIDEO_DETAIL)
                image = rig.apply(image, params, in_place=True)  # (already this frame's own copy)
            if wgt < 1.0:
                image = (original + wgt * (image.astype(np.float32) - original) + 0.5).astype(np.uint8)
            yield Frame(image, bool(prep.found[j]))


def _asked_gap(speech: Speech, settings: RenderSettings, mouth=None) -> np.ndarray:
    """The inner-lip gap the speech asks for per frame, in pupil distances (the opening curve times the job's
    mouth_gain times OPEN_GAP)."""
    mouth = mouth if mouth is not None else mouth_curves(speech)
    gain = float(getattr(settings.engine, "mouth_gain", 1.0) or 0.0)
    return mouth.open * gain * OPEN_GAP


_PIVOT = (1, 4, 152, 9)  # nose tip, nose, chin, between the brows: the head turns about its middle


# The warp openings (mouth_open units) at which a photo's drawn gap is measured; linear in between.
OPEN_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.3)


# The small moves of the head (degrees, scale, pixels) under which each opening is measured: the mesh's reading of
# a drawn mouth shifts with sub-pixel moves, and a render is measured while idle head motion moves it.
_CALIBRATION_MOVES = ((0.0, 1.0, 0.0), (2.0, 1.0, 1.5), (-2.0, 0.97, -1.5), (0.0, 1.03, 0.7))


def photo_gaps(rig: FaceRig, frame: np.ndarray) -> np.ndarray:
    """The inner-lip gap (pupil distances) that QC's mesh measures on the portrait warped to each of OPEN_LEVELS.

    The speech's gaps (OPEN_GAP) are calibrated in what MediaPipe's mesh measures on a real speaker, and the
    warp's own landmarks are only a model of what the mesh will see on the drawn mouth: on the six portraits at
    hand the mesh read 0.71-1.0x the landmarks' gain (a painted cavity whose lip edges it fits inside the
    moved lip line), and on the Mona Lisa nearly nothing for the first quarter of the range. Mapping through the
    landmarks, those faces opened 0.76-0.80x the real speaker. Each opening is the mean over a few small head
    moves (_CALIBRATION_MOVES): on one still frame the mesh's reading of a painted mouth is one draw of its
    noise (spread over the moves 0.03-0.08 on the Mona Lisa, under 0.035 on the others). Measured once per
    portrait (24 meshes, ~0.5 s, in the cached preparation); the landmarks' own gaps when the mesh loses the face."""
    from pipelines.face.landmarks import detect_faces
    from pipelines.face.pick import face_at

    source = cv2.cvtColor(frame, cv2.COLOR_RGB2RGBA)
    h, w = frame.shape[:2]
    centre = rig.points.mean(axis=0)
    measured, modelled = [], []
    for level in OPEN_LEVELS:
        params = {"mouth_open": level}
        modelled.append(mouth_opening(rig.displaced_landmarks(params)))
        image = cv2.cvtColor(rig.apply(source, params), cv2.COLOR_RGBA2RGB)
        reads = []
        for angle, scale, shift in _CALIBRATION_MOVES:
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            matrix[0, 2] += shift
            moved = cv2.warpAffine(
                image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
            )
            faces = detect_faces(moved)
            at = tuple(matrix[:, :2] @ centre + matrix[:, 2])
            reads.append(mouth_opening(face_at(faces, at).points) if faces else np.nan)
        measured.append(float(np.mean(reads)))
    return _increasing(measured if np.isfinite(measured).all() else modelled)


def _increasing(gaps) -> np.ndarray:
    """A wider warp never reads as a smaller gap (the mesh's noise on near-equal openings): made strictly
    increasing, so the table inverts."""
    gaps = np.maximum.accumulate(np.asarray(gaps, np.float64))
    return gaps + np.arange(len(gaps)) * 1e-6


def photo_mouth(rig: FaceRig, curves: np.ndarray, gaps: np.ndarray | None = None) -> np.ndarray:
    """The rig's mouth parameters for (open as the inner-lip gap in pupil distances, width, round, closure).

    Each portrait rests with its own gap (closed lips, parted lips, a grin showing teeth) and the warp opens each
    by its own amount per unit: `gaps` (photo_gaps: the gap measured at each of OPEN_LEVELS; None: the rig's
    landmarks moved by the warp) is inverted, so every face opens as wide as the speech asks and a parted
    portrait presses its lips together where the speech asks for less than its rest gap (in pauses and
    silences the mouth is shut, not frozen in the photo's grin)."""
    if gaps is None:
        gaps = _increasing([mouth_opening(rig.displaced_landmarks({"mouth_open": v})) for v in OPEN_LEVELS])
    rest = float(gaps[0])
    gap = curves[:, 0]
    out = curves.copy()
    out[:, 0] = np.interp(gap, gaps, OPEN_LEVELS)  # under the rest gap 0, past the widest the widest
    if not rig.closed_at_rest:
        pressed = np.clip(1.0 - gap / max(rest, 1e-6), 0.0, 1.0)
        out[:, 3] = np.maximum(out[:, 3], pressed)
    return out


def _kind_of(path: Path) -> str:
    from pipelines.media.formats import media_kind

    kind = media_kind(path)
    if kind is None:
        raise InputError(path, "source", "expected an image or a video")
    return kind


def _prepare_still(source: Path, size: tuple[int, int], pick=None) -> dict[str, np.ndarray]:
    from pipelines.engines.preview.framing import margin_for, portrait_matrix
    from pipelines.face.align import transform_points
    from pipelines.face.landmarks import detect_faces
    from pipelines.face.pick import face_at, persona_face
    from pipelines.media.video_in import read_image

    try:
        image = read_image(source)
    except InputError as exc:
        raise InputError(source, "source", exc.message) from None
    face = persona_face(
        image, pick, source
    )  # the largest (the persona in a portrait) unless the persona picks
    if face is None:
        raise InputError(source, "source", "no face found in the persona image")
    margin = margin_for(size)
    matrix = portrait_matrix(face.points.astype(np.float64), size, margin, (image.shape[1], image.shape[0]))
    canvas = (size[0] + 2 * margin, size[1] + 2 * margin)
    frame = cv2.warpAffine(image, matrix, canvas, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    # Landmarks found again on the crop are more precise than the portrait's mapped through the matrix
    # (the mesh is fitted at the crop's scale); fall back to the mapped ones if the crop hides the face. The crop
    # may show a part of another face of a group photo: take the one where the chosen face was mapped to.
    mapped = transform_points(matrix, face.points)
    again = detect_faces(frame)
    points = face_at(again, tuple(mapped.mean(axis=0))).points if again else mapped
    points = points[None].astype(np.float32)
    return {
        "frame": frame,
        "points": points,
        "found": np.ones(1, np.uint8),
        "margin": np.array([margin], np.int32),
        "gaps": photo_gaps(FaceRig(points[0].astype(np.float64), frame.shape), frame),
    }


def _add_clip_mouths(prep: PreviewPrepared, clip: Path, key: str, fps: float, cache) -> None:
    """A photo persona's mouth library from its `mouths:` clip (or the note why there is none)."""
    from pipelines.engines.preview.photo_mouths import clip_mouths

    arrays = cache.get_or_compute(
        "preview", f"{key}-mouths", lambda: _prepare_video(clip, fps, None, "mouths")
    )
    points, found = arrays["points"].astype(np.float64), arrays["found"].astype(bool)
    prep.mouth_clip = clip
    prep.mouths, prep.mouths_note = build_library(points, found)
    if prep.mouths is not None:
        assert prep.frame is not None
        prep.mouth_store, prep.mouth_points = clip_mouths(
            clip, fps, points, prep.mouths, prep.frame, prep.points[0]
        )


def _prepare_video(
    source: Path, fps: float, size: tuple[int, int] | None, field: str = "source", pick=None
) -> dict[str, np.ndarray]:
    from pipelines.face.track import track_persona

    src = open_source(source, fps, size)
    track = track_persona(src.frames(), pick, source)
    if track.n_found == 0:
        raise InputError(source, field, "no face found in any frame of the persona video")
    return {
        "points": track.smoothed,
        "found": track.found.astype(np.uint8),
        "size": np.array([src.width, src.height], np.int32),
    }
