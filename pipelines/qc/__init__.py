"""Quality checks on a rendered file: lip sync against the audio, closed mouth in silence, faces, durations, loudness."""
