"""What every model engine shares: the machinery between a prepared persona and the frames `render` yields.

An engine folder (latentsync/, musetalk/, echomimic_v2/, ...) holds only its own models and pipeline; it builds its
render loop from these modules:

- `chunks`      the fixed chunk grid from frame 0, per-chunk random generators (resume = same frames), ping-pong
- `prefetch`    make the next chunk on a background thread (pipelines.ahead.Ahead) and on its own CUDA stream
- `source_frames`  frames of a persona source by index, decoding forwards (ping-pong turns restart the decoder)
- `face_region` one upload of the face region per chunk, aligned crops on the device, paste-back, one download;
                content keys of crops (what a crop is computed from)
- `color`       match the regenerated region's colour to the source face along the inside of the mask border
- `latent_cache` content-keyed LRU of per-crop VAE latent distributions (reference encodings reused across chunks
                and jobs)
- `device`      default device, dtype names ("auto", "float16", ...), placing modules
- `offload`     diffusers' CPU offloading by name: "model", "group" (block level, streamed on CUDA), "leaf"
- `motion_norm` GroupNorm with per-frame statistics for AnimateDiff motion modules (LatentSync, EchoMimic V2)
- `retime`      render at the model's frame rate (25 fps), deliver each output frame the nearest model frame
- `clock`       seconds per stage from any thread (optionally synchronised with the device, for bench/)
- `weights`     an engine's weight files through pipelines.weights (resolve on disk, describe with pinned revisions)

Each module's docstring says how an engine uses it; pipelines/engines/latentsync/engine.py is the worked example.
"""
