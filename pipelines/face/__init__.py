"""Face analysis shared by every engine: MediaPipe landmarks, source checks, face tracks over time, LatentSync-style
similarity alignment, the lower-face mask and paste-back blending. MediaPipe and OpenCV are imported only when used."""

from pipelines.face.align import (
    AlignTemplate,
    alignment_matrices,
    face_centred_crop_matrix,
    latentsync_anchors,
    latentsync_template,
    similarity_to_template,
    similarity_transform,
    warp_to_crop,
)
from pipelines.face.blend import feathered_mask, passthrough_crossfade, paste_back
from pipelines.face.inspect import Problem, SourceReport, inspect_source
from pipelines.face.landmarks import FaceLandmarks, LandmarkDetector, detect_faces
from pipelines.face.mask import latent_mask, latentsync_mask
from pipelines.face.track import FaceTrack, track_faces

__all__ = [
    "AlignTemplate",
    "FaceLandmarks",
    "FaceTrack",
    "LandmarkDetector",
    "Problem",
    "SourceReport",
    "alignment_matrices",
    "detect_faces",
    "face_centred_crop_matrix",
    "feathered_mask",
    "inspect_source",
    "latent_mask",
    "latentsync_anchors",
    "latentsync_mask",
    "latentsync_template",
    "passthrough_crossfade",
    "paste_back",
    "similarity_to_template",
    "similarity_transform",
    "track_faces",
    "warp_to_crop",
]
