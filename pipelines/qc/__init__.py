"""Quality checks on rendered files (docs/qc.md).

measure: what is measured on a frame (mouth opening, face sharpness) and on the audio; `qc_file`.
sampling: the render's subsample, measured on a worker thread while the frames are made.
figures: the figures made of the per-frame tracks (mouth statistics, closed mouth in pauses, offset, sharpness).
syncnet, sync: LatentSync's SyncNet and the LSE-style lip-sync score (`talkreel qc --sync`).
gates: thresholds on the figures that fail CI. report: the review page. contact_sheet: frame grids.
"""
