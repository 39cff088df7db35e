"""talkreel pipelines: everything that turns one validated job into a finished file."""

__version__ = "0.1.0"
