"""Input files that must be more than present: an image that decodes, a font FreeType can read.

Checked while the spec validates, so a theme logo that is really a text file, or a 20000x20000 persona photo,
is an error of that field at `talkreel validate` (exit 2), not a failure halfway through a render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from pipelines.spec.paths import InputFile, fail


def usable_image(path: Path) -> Path:
    from pipelines.media.images import image_problem

    if path.is_file():  # a path validated without a project context stays as written, unchecked
        problem = image_problem(path)
        if problem:
            raise fail(problem)
    return path


def usable_font(path: Path) -> Path:
    from PIL import ImageFont

    if path.is_file():
        try:
            ImageFont.truetype(str(path), size=12)
        except (OSError, ValueError) as exc:
            raise fail(f"{path.name!r} is not a readable TrueType/OpenType font ({exc})") from None
    return path


ImageFile = Annotated[InputFile, AfterValidator(usable_image)]
FontFile = Annotated[InputFile, AfterValidator(usable_font)]
