"""scikit-learn's handwritten digits written out as an image folder (for the demo and tests)."""

from __future__ import annotations

from pathlib import Path

from sm_imgclf._lazy import require


def digits_to_folder(
    target: str | Path, *, size: int = 32, limit_per_class: int | None = None
) -> Path:
    """Write scikit-learn's 1,797 8x8 digits as ``target/<digit>/<n>.png`` images.

    Args:
        target: The folder to write (one sub-folder per digit, no split folders).
        size: Side of the written images in pixels (upscaled from 8).
        limit_per_class: Write at most this many images of each digit.

    Returns:
        ``target``.
    """
    datasets = require("sklearn.datasets", extra="demo")
    from PIL import Image

    digits = datasets.load_digits()
    target = Path(target)
    written: dict[int, int] = {}
    for pixels, label in zip(digits.images, digits.target, strict=True):
        count = written.get(int(label), 0)
        if limit_per_class is not None and count >= limit_per_class:
            continue
        folder = target / f"{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        gray = (pixels * (255 / 16)).astype("uint8")
        Image.fromarray(gray).resize((size, size), Image.Resampling.NEAREST).save(
            folder / f"{count:04d}.png"
        )
        written[int(label)] = count + 1
    return target
