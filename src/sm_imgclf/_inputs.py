"""Images as request bytes, whatever form the caller holds them in."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from sm_imgclf._params import bad_value


def encode(item: Any) -> bytes:
    """Return image bytes for a path, bytes, a PIL image or a numpy array."""
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    if isinstance(item, str | Path):
        path = Path(item)
        if not path.is_file():
            raise bad_value("image", "an existing image file", str(item))
        return path.read_bytes()
    if hasattr(item, "save") and hasattr(item, "mode"):  # a PIL image
        buffer = io.BytesIO()
        item.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()
    if hasattr(item, "__array__"):
        from PIL import Image

        return encode(Image.fromarray(item))
    raise bad_value("image", "a path, bytes, a PIL image or a numpy array", type(item).__name__)
