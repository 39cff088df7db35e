"""Whisper-tiny audio features shared by the lip-sync engines: log-mel, encoder, per-video-frame windows."""
