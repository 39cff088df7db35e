"""Hand-pose tracks for half-body engines (EchoMimic V2): 21 keypoints per hand, stored as plain arrays.

track: the HandPoses container, its .npz file format, alignment to a persona image and seamless looping;
extract: keypoints from a video (MediaPipe hands) and the body anchor of an image (MediaPipe pose);
rest: a generated "hands at rest" track for personas without one; upstream: a safe importer for upstream's
per-frame DWPose .npy folders; draw: the pose images the model was trained on.
"""
