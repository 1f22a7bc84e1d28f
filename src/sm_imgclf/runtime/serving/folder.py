"""Offline scoring of a folder of images with the handler (the local batch transform)."""

from __future__ import annotations

import json
from pathlib import Path

from sm_imgclf.data.layout import IMAGE_EXTENSIONS
from sm_imgclf.errors import DatasetError
from sm_imgclf.runtime.serving.handler import (
    RequestError,
    decode_image,
    model_fn,
    predict_fn,
    top_k_rows,
)

OUTPUT_NAME = "predictions.jsonl"


def predict_folder(
    package: Path, folder: Path, output: Path, *, top_k: int = 5, batch_size: int = 64
) -> Path:
    """Write one JSON line per image of ``folder`` (recursively) to ``output/predictions.jsonl``.

    Files that cannot be decoded get a line with an ``error`` instead of predictions.
    """
    import torch

    from sm_imgclf.runtime.serving.handler import Batch

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"No images under {folder}.")
    model = model_fn(str(package))
    output.mkdir(parents=True, exist_ok=True)
    with (output / OUTPUT_NAME).open("w") as sink:
        for start in range(0, len(files), batch_size):
            decoded, lines = [], []
            for path in files[start : start + batch_size]:
                try:
                    decoded.append(decode_image(path.read_bytes(), model.image_size))
                    lines.append({"file": path.relative_to(folder).as_posix()})
                except RequestError as error:
                    sink.write(
                        json.dumps(
                            {"file": path.relative_to(folder).as_posix(), "error": str(error)}
                        )
                        + "\n"
                    )
            if decoded:
                result = predict_fn(Batch(torch.stack(decoded), top_k), model)
                rows = top_k_rows(result["probabilities"], result)
                for line, row in zip(lines, rows, strict=True):
                    sink.write(json.dumps({**line, **row}) + "\n")
    return output / OUTPUT_NAME
