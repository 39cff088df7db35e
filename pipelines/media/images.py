"""Opening still images (persona photos, logos, backgrounds) with bounds, so one hostile file is one clear error.

Pillow refuses a "decompression bomb" (a small file that decodes to hundreds of megapixels) and a PNG whose
compressed text chunks inflate past its limit, but it does so with its own exception types, which would stop the
whole batch as an internal error. Here every way an image can fail to open becomes `ImageProblem`, whose text
says what is wrong; callers turn it into an InputError naming their file and field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Larger than any camera photo (a 48 MP phone sensor is 8000x6000): a persona photo, logo or background has no
# use for more, and decoding one costs ~4 bytes a pixel.
MAX_IMAGE_PIXELS = 50_000_000


class ImageProblem(ValueError):
    """An image that cannot (or must not) be decoded; the text says why."""


@contextmanager
def open_image(path: str | os.PathLike) -> Iterator:
    """A PIL image of `path`, after checking its size from the header; any failure (here or while the caller
    decodes it) is raised as ImageProblem."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageProblem(
                    f"{path.name!r} is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                    f"at most {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, scale it down"
                )
            yield img
    except ImageProblem:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageProblem(f"{path.name!r} decodes to too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # ValueError: a PNG text chunk that inflates past Pillow's limit; SyntaxError: some broken headers.
        raise ImageProblem(f"{path.name!r} is not a readable image ({exc})") from None


def image_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a usable image (header, size, and every pixel decoded), or None."""
    try:
        with open_image(path) as img:
            img.load()
    except ImageProblem as exc:
        return str(exc)
    return None
