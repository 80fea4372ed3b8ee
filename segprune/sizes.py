"""Image sizes: one (height, width) pair wherever a size is taken, written `N` (square) or `HxW`.

Pure Python, so that the command line parses `--image-size` without starting a framework.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

ImageSize = tuple[int, int]

_SIZE_TEXT = re.compile(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?")


def parse_image_size(text: str, name: str = "image_size") -> ImageSize:
    """`"256"` -> (256, 256), `"256x512"` -> (256, 512) (height x width); `name` is what the error message calls the
    value (empty where the caller names it itself, as argparse does).

    Raises:
        ValueError: The text is not N or HxW with positive integers; the message shows both forms.

    Example:
        >>> parse_image_size("256x512")
        (256, 512)
    """
    match = _SIZE_TEXT.fullmatch(text)
    if match is None or int(match.group(1)) < 1 or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ValueError(f"{name + ' ' if name else ''}takes N or HxW (height x width, positive integers), e.g. 256 or 256x512; got {text!r}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def as_image_size(value: int | Sequence[int] | str) -> ImageSize:
    """Any way a caller gives a size, as (height, width): an int N (square), a (height, width) pair, or `"N"` / `"HxW"`.

    Raises:
        ValueError: Anything else, or a size below 1; the message names what was given and both accepted forms.

    Example:
        >>> as_image_size(256), as_image_size((256, 512)), as_image_size("256x512")
        ((256, 256), (256, 512), (256, 512))
    """
    if isinstance(value, str):
        return parse_image_size(value)
    if isinstance(value, Sequence) and len(value) == 2 and all(_is_integer(side) for side in value):
        size = (int(value[0]), int(value[1]))
    elif _is_integer(value):
        size = (int(value), int(value))
    else:
        raise ValueError(f"image_size takes N or (height, width), e.g. 256 or (256, 512); got {value!r}.")
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, e.g. 256 or (256, 512); got {value!r}.")
    return size


def format_size(value: int | Sequence[int] | str) -> str:
    """A size as reports print it: `"256x512"` (height x width); a square N prints `"NxN"`.

    Example:
        >>> format_size((256, 512)), format_size(64)
        ('256x512', '64x64')
    """
    height, width = as_image_size(value)
    return f"{height}x{width}"


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # NumPy's integers are Integral too
