"""CIFAR-10 import: from the python pickle batches to an image folder."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sm_imgclf._params import bad_value
from sm_imgclf.data.split import stratified_split
from sm_imgclf.errors import DatasetError, DatasetNotFoundError

logger = logging.getLogger(__name__)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def cifar10_to_folder(
    source: str | Path,
    target: str | Path,
    *,
    valid: float = 0.1,
    seed: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write the CIFAR-10 python batches as ``target/{train,valid,test}/<class>/<n>.png``.

    Args:
        source: The folder ``cifar-10-batches-py`` extracted from
            ``cifar-10-python.tar.gz`` (``data_batch_1`` ... ``data_batch_5``,
            ``test_batch``, ``batches.meta``).
        target: Where to write the image folder; must be empty or missing.
        valid: Share of each class of the training batches set aside as ``valid``.
        seed: Seed of the stratified validation split.
        progress: Show a progress bar; ``None`` shows it on a terminal only.

    Returns:
        ``target``, ready for :class:`~sm_imgclf.ImageFolderDataset`.

    Raises:
        DatasetNotFoundError: A batch file is missing.
        DatasetError: A batch is not a CIFAR-10 pickle, or ``target`` is not empty.
    """
    source, target = Path(source), Path(target)
    if target.exists() and any(target.iterdir()):
        raise DatasetError(f"{target} is not empty; choose a new folder for the images.")
    names = _load(source / "batches.meta")[b"label_names"]
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    train = list(_records(source, TRAIN_BATCHES))
    labels = [label for _, label in train]
    splits = stratified_split(labels, {"valid": valid} if valid else {}, seed)
    _write(
        target,
        class_names,
        [(s, pixels, label) for s, (pixels, label) in zip(splits, train, strict=True)],
        progress,
    )
    _write(
        target,
        class_names,
        [("test", p, lab) for p, lab in _records(source, ("test_batch",))],
        progress,
    )
    return target


def _load(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{path} is missing. Extract {ARCHIVE_URL} and pass its cifar-10-batches-py folder."
        )
    try:
        with path.open("rb") as handle:
            data = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DatasetError(f"{path} is not a CIFAR-10 pickle batch ({error}).") from error
    if not isinstance(data, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 pickle batch (expected a dict).")
    return data


def _records(source: Path, batches: tuple[str, ...]) -> Iterator[tuple[Any, int]]:
    for batch in batches:
        data = _load(source / batch)
        try:
            pixels, labels = data[b"data"], data[b"labels"]
        except KeyError as error:
            raise DatasetError(f"{source / batch} has no {error.args[0]!r} entry.") from None
        if getattr(pixels, "shape", (0, 0))[1:] != (3072,) or len(labels) != len(pixels):
            raise DatasetError(
                f"{source / batch}: expected data of shape (n, 3072) and n labels, got "
                f"{getattr(pixels, 'shape', type(pixels).__name__)} and {len(labels)} labels."
            )
        yield from zip(pixels, labels, strict=True)


def _write(
    target: Path, class_names: list[str], rows: list[tuple[str, Any, int]], progress: bool | None
) -> None:
    from PIL import Image
    from tqdm.auto import tqdm

    from sm_imgclf._progress import bar_disabled

    counters: dict[tuple[str, int], int] = {}
    for split, pixels, label in tqdm(
        rows, desc="cifar10", unit="img", disable=bar_disabled(progress)
    ):
        if not 0 <= label < len(class_names):
            raise bad_value("a CIFAR-10 label", f"in [0, {len(class_names) - 1}]", label)
        folder = target / split / class_names[label]
        number = counters.get((split, label), 0)
        counters[(split, label)] = number + 1
        if number == 0:
            folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels.reshape(3, 32, 32).transpose(1, 2, 0))
        image.save(folder / f"{number:05d}.png")
