"""The pixels a model sees: one pipeline in training and serving, small images kept whole."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sm_imgclf.runtime.images import eval_tensor, grow, square_tensor
from sm_imgclf.runtime.job.data import load_splits
from sm_imgclf.runtime.serving.handler import decode_image


def digit_like(side: int = 8) -> Image.Image:
    """A small image whose outermost pixels differ from the rest, as a digit's edge."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    pixels[0, :] = pixels[-1, :] = pixels[:, 0] = pixels[:, -1] = (250, 10, 10)
    return Image.fromarray(pixels)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def whole(image: Image.Image, side: int) -> np.ndarray:
    """The image resized to the square by Pillow, nothing cut."""
    resized = image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(resized).transpose(2, 0, 1)


@pytest.mark.parametrize("side", [32, 64])
def test_a_small_image_reaches_the_model_uncropped(tmp_path: Path, side: int) -> None:
    image = digit_like()
    expected = eval_tensor(png(image), side).numpy()  # evaluation
    assert np.array_equal(decode_image(png(image), side).numpy(), expected)  # serving
    for split in ("train", "valid"):
        (tmp_path / split / "7").mkdir(parents=True)
        (tmp_path / split / "7" / "a.png").write_bytes(png(image))
    channels = {"train": tmp_path / "train", "valid": tmp_path / "valid"}
    splits = load_splits(channels, side, "none", 0)
    for split in splits.values():  # held at 8 px, enlarged per batch as serving enlarges
        assert split.images.shape[-1] == 8 and split.side == side
        assert np.array_equal(grow(split.images, split.side)[0].numpy(), expected)
    # The outer row is the image's edge colour, not a row from inside it.
    assert tuple(expected[:, 0, side // 2]) == (250, 10, 10)
    # The same picture Pillow's resize of the whole image gives, up to resampling.
    difference = np.abs(expected.astype(int) - whole(image, side).astype(int))
    assert difference.mean() < 3 and tuple(difference.shape) == (3, side, side)


def test_a_large_image_keeps_the_torchvision_crop() -> None:
    image = Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8))
    image.paste((255, 255, 255), (0, 0, 400, 10))  # a top band the crop margin removes
    tensor = square_tensor(image, 224, shorter=256)
    assert tensor.shape == (3, 224, 224) and int(tensor[:, 0].max()) == 0


def test_a_small_oblong_image_loses_only_its_longer_sides_excess() -> None:
    image = Image.fromarray(np.full((8, 16, 3), 100, dtype=np.uint8))
    image.paste((250, 0, 0), (0, 0, 16, 1))  # the top row, on the shorter side
    tensor = square_tensor(image, 32, shorter=37)
    assert tensor.shape == (3, 32, 32) and int(tensor[0, 0].min()) > 200
