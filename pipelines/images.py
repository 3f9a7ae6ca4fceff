"""Opening image files, with every way it can fail turned into one clear :class:`ImageReadError`.

Condition maps, photos and PNGs whose settings are read all open through :func:`open_image`, so a
missing, unreadable, foreign or damaged file reads the same wherever it is met.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipelines.errors import ImageReadError


@contextmanager
def open_image(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """The decoded image at ``path`` (closed on leaving the block). Pillow's errors raised while
    the block works on the data (a damaged chunk met late) are mapped as well."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decodes everything, so a damaged file fails here, not later
            yield image
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: the file does not exist.") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path} is a folder, not an image file.") from None
    except PermissionError:
        raise ImageReadError(f"{path}: no permission to read this file.") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path} is not an image in a supported format (PNG, JPEG, WebP, BMP, TIFF, ...) "
            "or it is damaged."
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path} is too large to open safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports bad checksums as SyntaxError and truncated or corrupt data as OSError.
        raise ImageReadError(f"{path} is damaged or truncated and cannot be read: {exc}") from None
