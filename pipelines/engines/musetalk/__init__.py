"""MuseTalk 1.5 (TMElyralab/MuseTalk, MIT code): single-step latent inpainting of the lower face, on stock diffusers
and transformers modules. `unet` (the UNet and its strict loading), `audio` (whisper-tiny windows per frame),
`pipeline` (one UNet step from crops to faces), `crop` (the face box and blend mask from the MediaPipe mesh)."""
