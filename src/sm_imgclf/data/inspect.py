"""Opening one file: is it an image Pillow can decode, and what kind."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from sm_imgclf.data.layout import IMAGE_EXTENSIONS
from sm_imgclf.data.report import Severity

# Modes that decode fine but need care before they become RGB tensors.
UNUSUAL_MODES = frozenset(
    {
        "CMYK",
        "P",
        "PA",
        "LA",
        "1",
        "I",
        "F",
        "I;16",
        "I;16B",
        "I;16L",
        "I;16N",
        "YCbCr",
        "LAB",
        "HSV",
        "RGBX",
        "RGBa",
        "La",
    }
)
_EXIF_ORIENTATION = 0x0112
_EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".ppm": "PPM",
    ".pgm": "PPM",
}


@dataclass(frozen=True)
class Issue:
    """A problem or remark about one file, before it is tied to a split and class."""

    code: str
    severity: Severity
    message: str
    skipped: bool = False


@dataclass
class Inspection:
    """What opening one file told us; ``usable`` is False when it must not be trained on."""

    size: int = 0
    md5: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    issues: list[Issue] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True when no issue leaves the file out or is an error."""
        return not any(i.skipped or i.severity is Severity.ERROR for i in self.issues)


def inspect_file(path: Path, *, max_pixels: int, min_side: int, decode: bool = True) -> Inspection:
    """Read one file and decode it (its header only without ``decode``), recording every issue."""
    result = Inspection()
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = "a broken link" if path.is_symlink() else error.strerror or str(error)
        result.issues.append(
            Issue(
                "unreadable_file", Severity.ERROR, f"cannot be read ({reason}). Fix or remove it."
            )
        )
        return result
    result.size, result.md5 = len(data), hashlib.md5(data, usedforsecurity=False).hexdigest()
    if not data:
        result.issues.append(
            Issue("empty_file", Severity.ERROR, "is empty (0 bytes). Re-copy or remove it.")
        )
        return result
    _decode(
        data, path.suffix.lower(), result, max_pixels=max_pixels, min_side=min_side, whole=decode
    )
    return result


def _decode(
    data: bytes, suffix: str, result: Inspection, *, max_pixels: int, min_side: int, whole: bool
) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            result.width, result.height = image.size
            result.mode, result.format = image.mode, image.format or ""
            if result.width * result.height > max_pixels:
                result.issues.append(_bomb(result.width, result.height, max_pixels))
                return
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            if whole:
                image.load()
    except Image.DecompressionBombError as error:
        result.issues.append(
            Issue("decompression_bomb", Severity.ERROR, f"refused without decoding: {error}")
        )
        return
    except UnidentifiedImageError:
        result.issues.append(_not_an_image(suffix))
        return
    except (OSError, SyntaxError, ValueError) as error:
        code = "truncated_image" if "truncated" in str(error).lower() else "corrupt_image"
        result.issues.append(
            Issue(code, Severity.ERROR, f"cannot be decoded ({error}). Re-export or remove it.")
        )
        return
    result.issues.extend(_remarks(result, suffix, orientation, min_side))


def _bomb(width: int, height: int, max_pixels: int) -> Issue:
    return Issue(
        "decompression_bomb",
        Severity.ERROR,
        f"{width}x{height} = {width * height:,} pixels exceeds max_pixels="
        f"{max_pixels:,}; refused without decoding. Resize it, or raise max_pixels "
        "if you trust the file.",
    )


def _not_an_image(suffix: str) -> Issue:
    if suffix in IMAGE_EXTENSIONS:
        return Issue(
            "corrupt_image",
            Severity.ERROR,
            "has an image extension but is not an image Pillow can read. Re-export or remove it.",
        )
    return Issue(
        "not_an_image",
        Severity.WARNING,
        "is not an image; ignored. Move it out of the class folder.",
        skipped=True,
    )


def _remarks(result: Inspection, suffix: str, orientation: object, min_side: int) -> list[Issue]:
    remarks: list[Issue] = []
    if result.mode in UNUSUAL_MODES:
        remarks.append(
            Issue(
                "unusual_mode",
                Severity.WARNING,
                f"mode {result.mode} ({result.format}); will be converted to RGB.",
            )
        )
    elif result.mode not in {"RGB", "L", "RGBA"}:
        remarks.append(
            Issue(
                "unusual_mode",
                Severity.WARNING,
                f"unsupported mode {result.mode}; conversion to RGB may fail.",
            )
        )
    if isinstance(orientation, int) and orientation not in (0, 1):
        remarks.append(
            Issue(
                "exif_rotation",
                Severity.INFO,
                f"EXIF orientation {orientation}; it will be rotated upright.",
            )
        )
    if min(result.width, result.height) < min_side:
        remarks.append(
            Issue(
                "small_image",
                Severity.WARNING,
                f"only {result.width}x{result.height} pixels (min_side={min_side}); "
                "it will be heavily upscaled.",
            )
        )
    expected = _EXTENSION_FORMATS.get(suffix)
    if expected and result.format and expected != result.format:
        remarks.append(
            Issue(
                "wrong_extension",
                Severity.INFO,
                f"named {suffix} but holds {result.format}; read as {result.format}.",
            )
        )
    return remarks
