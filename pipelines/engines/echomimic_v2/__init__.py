"""EchoMimic V2 (half-body presenter from a photo, speech and hand poses) on diffusers modules.

models: `reference_net` (the persona image's self-attention features, once per persona), `denoiser` (the video
UNet that attends to them, to the speech and to the drawn hand poses), `pose_encoder`; `checkpoints` loads the
official weights strictly.
"""
