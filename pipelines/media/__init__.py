"""Everything ffmpeg: binary discovery, probing, audio prep, persona frames in, resumable segments and the final MP4.

- ffmpeg.py: ffmpeg_exe(), run_ffmpeg(), FFmpegPipe, FFmpegError
- probe.py: probe() -> MediaInfo, is_faststart()
- audio.py: load_audio(), measure_loudness(), join_segments(), pad_or_trim(), frame_count(),
  join_audio() -> JoinedAudio (JoinedAudio.write_normalised() writes the output track)
- video_in.py: open_source() -> FrameSource, iter_frames()
- video_out.py: SegmentWriter, I420Frames, AudioTrack, completed_frames(), mux_segments(), encode_final()
- loudness.py: LoudnessMeter (EBU R128 in numpy, measured while the audio streams)
- limiter.py: TruePeakLimiter, limited_gain() (normalisation when peaks forbid a plain gain)
- truepeak.py: upsample(), peak_max(), sample_peaks(), TickPeaks (4x true peaks, upsampled only where they matter)
- atomic.py: temp_path_for(), move_into_place()
"""
