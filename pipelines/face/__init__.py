"""Face analysis shared by every engine: MediaPipe landmarks, source checks, face tracks over time, LatentSync-style
similarity alignment, the lower-face mask and paste-back blending. MediaPipe is imported only when a detector is built."""

from pipelines.face.inspect import Problem, SourceReport, inspect_source
from pipelines.face.landmarks import FaceLandmarks, LandmarkDetector, detect_faces

__all__ = [
    "FaceLandmarks",
    "LandmarkDetector",
    "Problem",
    "SourceReport",
    "detect_faces",
    "inspect_source",
]
