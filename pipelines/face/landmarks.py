"""Face landmarks from MediaPipe's face mesh (478 points with iris refinement; the models ship in the wheel).

`detect_faces` analyses one still image. `LandmarkDetector` is the reusable object behind it: in "image" mode every
call detects from scratch; in "video" mode MediaPipe tracks the face from the previous frame's landmarks (faster and
steadier), so one detector must see the frames of one clip in order.

MediaPipe's mesh pipeline finds faces with its short-range detector, which misses faces that fill only a small part
of a large picture (a persona shot at half length, two people side by side). In image mode a second pass runs the
full-range detector (on half-overlapping tiles when the whole picture shows no face at all) and, for every face it
finds that the mesh pass did not, runs the mesh on an enlarged square crop around that face and maps the points back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipelines.face import mesh

Mode = Literal["image", "video"]

_CROP_MARGIN = 1.0  # crop side = box side * (1 + 2 * margin): the mesh model wants forehead-to-chin context
_CROP_MIN_SIDE = 256  # small faces are upscaled to at least this before the mesh pass
_TILE_MIN_SIDE = 320


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: `points` (478, 2) float32 pixel x, y; `z` (478,) float32 depth in pixels (MediaPipe's relative depth,
    origin near the head centre, same scale as x; smaller = nearer the camera)."""

    points: np.ndarray
    z: np.ndarray

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the landmarks (forehead top to chin, cheek edge to cheek edge)."""
        x0, y0 = self.points.min(axis=0)
        x1, y1 = self.points.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def width(self) -> float:
        x0, _, x1, _ = self.bbox
        return x1 - x0

    @property
    def height(self) -> float:
        _, y0, _, y1 = self.bbox
        return y1 - y0

    @property
    def size(self) -> float:
        """sqrt(width * height) of the landmark box, in pixels: the scale used to rank and compare faces."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    @property
    def centre(self) -> np.ndarray:
        x0, y0, x1, y1 = self.bbox
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float32)

    @property
    def yaw(self) -> float:
        """Head yaw in degrees from the mesh's depth: 0 = facing the camera, positive = turned towards the image's
        right (the image-right half of the face is then farther away), about +-90 in full profile."""
        return yaw_degrees(self.points, self.z)

    def with_points(self, points: np.ndarray) -> FaceLandmarks:
        return FaceLandmarks(points=np.asarray(points, dtype=np.float32), z=self.z)


def yaw_degrees(points: np.ndarray, z: np.ndarray) -> float:
    """Yaw from mirrored point pairs: the left->right vector of each pair lies in the face plane, so its angle in
    the x-z plane is the head's rotation about the vertical axis. Summing the vectors weights wide pairs more."""
    left = [a for a, _ in mesh.SYMMETRIC_PAIRS]
    right = [b for _, b in mesh.SYMMETRIC_PAIRS]
    dx = float(np.sum(points[right, 0] - points[left, 0]))
    dz = float(np.sum(z[right] - z[left]))
    return float(np.degrees(np.arctan2(dz, dx)))


def _check_image(image_rgb: np.ndarray) -> np.ndarray:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {getattr(image_rgb, 'shape', None)}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image_rgb.dtype}")
    return np.ascontiguousarray(image_rgb)


def _to_face(landmark_list, width: int, height: int, offset=(0.0, 0.0), scale=1.0) -> FaceLandmarks:
    raw = np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], dtype=np.float64)
    if raw.shape[0] != mesh.N_POINTS:
        raise RuntimeError(f"MediaPipe returned {raw.shape[0]} landmarks, expected {mesh.N_POINTS}")
    pts = np.empty((raw.shape[0], 2), dtype=np.float64)
    pts[:, 0] = raw[:, 0] * width / scale + offset[0]
    pts[:, 1] = raw[:, 1] * height / scale + offset[1]
    z = raw[:, 2] * width / scale
    return FaceLandmarks(points=pts.astype(np.float32), z=z.astype(np.float32))


def _overlaps(face: FaceLandmarks, box: tuple[float, float, float, float]) -> bool:
    """True when the face's centre lies inside `box` (x0, y0, x1, y1)."""
    cx, cy = face.centre
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence MediaPipe's C++ start-up chatter (TFLite delegate INFO, "feedback tensors" warnings), which goes
    straight to file descriptor 2 while graphs start, whatever Python's logging says. TALKREEL_MEDIAPIPE_LOGS=1
    shows it."""
    if os.environ.get("TALKREEL_MEDIAPIPE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class LandmarkDetector:
    """A MediaPipe face-mesh graph kept alive across calls. Not thread-safe: one detector per thread/clip."""

    def __init__(
        self,
        mode: Mode = "image",
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        if mode not in ("image", "video"):
            raise ValueError(f"mode must be 'image' or 'video', got {mode!r}")
        if max_faces < 1:
            raise ValueError("max_faces must be >= 1")
        self.mode = mode
        self.max_faces = max_faces
        self._min_detection_confidence = min_detection_confidence
        self._far_detector = None
        self._crop_mesh = None
        self._quiet = True
        with _quiet_native_stderr():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=(mode == "image"),
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
            if mode == "image":
                self._far_detector = mp.solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=min_detection_confidence
                )
                self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=1,
                    refine_landmarks=True,
                    min_detection_confidence=min_detection_confidence,
                )
            # Graphs start (and log) on their first frame: do that here, inside the quiet block; one more warning
            # comes with the first face found, so detect() stays quiet until then.
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in (self._mesh, self._far_detector, self._crop_mesh):
                if graph is not None:
                    graph.process(blank)

    def detect(self, image_rgb: np.ndarray) -> list[FaceLandmarks]:
        """Faces in one RGB uint8 frame, largest first (at most `max_faces`)."""
        image = _check_image(image_rgb)
        with _quiet_native_stderr() if self._quiet else contextlib.nullcontext():
            faces = self._detect(image)
        if faces:
            self._quiet = False
        faces.sort(key=lambda f: f.size, reverse=True)
        return faces[: self.max_faces]

    def _detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        h, w = image.shape[:2]
        result = self._mesh.process(image)
        faces = [_to_face(lm, w, h) for lm in (result.multi_face_landmarks or [])]
        if self.mode == "image" and len(faces) < self.max_faces:
            faces += self._faces_missed_by_mesh(image, faces)
        return faces

    def _faces_missed_by_mesh(self, image: np.ndarray, found: list[FaceLandmarks]) -> list[FaceLandmarks]:
        h, w = image.shape[:2]
        boxes = self._detect_boxes(image)
        if not boxes and not found and max(h, w) > 2 * _TILE_MIN_SIDE:
            boxes = self._detect_boxes_in_tiles(image)
        extra: list[FaceLandmarks] = []
        for box in boxes:
            if any(_overlaps(f, box) for f in found + extra):
                continue
            side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * _CROP_MARGIN)
            face = self._mesh_in_square(image, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), side)
            if face is not None and _overlaps(face, box):
                extra.append(face)
        return extra

    def refit(self, image_rgb: np.ndarray, face: FaceLandmarks) -> FaceLandmarks:
        """The mesh fitted again on a square crop around `face` (image mode only); `face` itself when the crop
        shows none. The full-frame pass fits a face that fills a small part of a large frame loosely (a
        half-length 1080 x 1920 shot: the jaw line ~4 % of the face height low and ~6 % too wide on one side,
        against the 68 iBUG landmarks); the crop puts the face at the scale the mesh model is made for."""
        if self._crop_mesh is None:
            raise RuntimeError("refit needs an image-mode detector")
        fitted = self.face_near(image_rgb, face.bbox)
        return face if fitted is None else fitted

    def face_near(
        self, image_rgb: np.ndarray, box: tuple[float, float, float, float]
    ) -> FaceLandmarks | None:
        """The face meshed on a square crop around `box` (x0, y0, x1, y1; image mode only), None when the crop
        shows no face over the box: one face followed from frame to frame without a full-frame pass."""
        if self._crop_mesh is None:
            raise RuntimeError("face_near needs an image-mode detector")
        image = _check_image(image_rgb)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * (1 + 2 * _CROP_MARGIN)
        with _quiet_native_stderr() if self._quiet else contextlib.nullcontext():
            fitted = self._mesh_in_square(image, ((x0 + x1) / 2, (y0 + y1) / 2), side)
        return fitted if fitted is not None and _overlaps(fitted, box) else None

    def _mesh_in_square(self, image: np.ndarray, centre, side: float) -> FaceLandmarks | None:
        """The mesh of the face in the square of `side` pixels centred on `centre`, in frame coordinates."""
        import cv2

        h, w = image.shape[:2]
        x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
        side_i = int(round(side))
        if side_i < 16:
            return None
        # Pad (not clip) so the face stays centred in a square crop, like the mesh model expects.
        crop = np.zeros((side_i, side_i, 3), dtype=np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + side_i, w), min(y0 + side_i, h)
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        scale = max(1.0, _CROP_MIN_SIDE / side_i)
        if scale > 1.0:
            n = int(round(side_i * scale))
            crop = cv2.resize(crop, (n, n), interpolation=cv2.INTER_CUBIC)
            scale = n / side_i
        result = self._crop_mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        n = crop.shape[0]
        return _to_face(result.multi_face_landmarks[0], n, n, offset=(x0, y0), scale=scale)

    def _detect_boxes(self, image: np.ndarray, offset=(0, 0)) -> list[tuple[float, float, float, float]]:
        h, w = image.shape[:2]
        boxes = []
        for det in self._far_detector.process(np.ascontiguousarray(image)).detections or []:
            rb = det.location_data.relative_bounding_box
            x0, y0 = rb.xmin * w + offset[0], rb.ymin * h + offset[1]
            boxes.append((x0, y0, x0 + rb.width * w, y0 + rb.height * h))
        return boxes

    def _detect_boxes_in_tiles(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Last resort for a small face in a large frame: the detectors see a downscaled image where such a face
        is a few pixels wide, so look again in half-overlapping tiles at full resolution."""
        h, w = image.shape[:2]
        side = max(_TILE_MIN_SIDE, min(h, w) // 2)
        step = side // 2
        boxes: list[tuple[float, float, float, float]] = []
        for y in range(0, max(h - side, 0) + step, step):
            for x in range(0, max(w - side, 0) + step, step):
                tile = image[y : y + side, x : x + side]
                for box in self._detect_boxes(tile, offset=(x, y)):
                    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                    if not any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes):
                        boxes.append(box)
        return boxes

    def close(self) -> None:
        for graph in (self._mesh, self._far_detector, self._crop_mesh):
            if graph is not None:
                graph.close()
        self._mesh = self._far_detector = self._crop_mesh = None

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_shared: dict[int, LandmarkDetector] = {}
_shared_lock = threading.Lock()


def detect_faces(image_rgb: np.ndarray, max_faces: int = 4) -> list[FaceLandmarks]:
    """Faces in a still RGB uint8 image, largest first; [] when there is none.

    Reuses one image-mode detector per `max_faces` for the life of the process (building a graph costs more
    than analysing a frame)."""
    with _shared_lock:
        det = _shared.get(max_faces)
        if det is None:
            det = _shared[max_faces] = LandmarkDetector("image", max_faces=max_faces)
        return det.detect(image_rgb)
