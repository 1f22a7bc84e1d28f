"""Offline scoring of many images: the handler over a folder, or a SageMaker batch transform."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sm_imgclf.data.layout import IMAGE_EXTENSIONS
from sm_imgclf.errors import DatasetError
from sm_imgclf.serving.handler import RequestError, decode_image, model_fn, predict_fn, top_k_rows

OUTPUT_NAME = "predictions.jsonl"


@dataclass(frozen=True)
class BatchSpec:
    """A batch prediction job.

    Attributes:
        name: Job name (SageMaker transform job and model name).
        model_uri: The model package.
        input_uri: Folder (``file://``) or S3 prefix of the images.
        output_uri: Where predictions go.
        instance_type: SageMaker instance type.
        instance_count: SageMaker instances.
        top_k: Classes per image.
        image_uri: Inference image (looked up when ``None``).
        role: IAM role ARN for SageMaker.
    """

    name: str
    model_uri: str
    input_uri: str
    output_uri: str
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    top_k: int = 5
    image_uri: str | None = None
    role: str | None = None


def predict_folder(package: Path, folder: Path, output: Path, *, top_k: int = 5,
                   batch_size: int = 64) -> Path:
    """Write one JSON line per image of ``folder`` (recursively) to ``output/predictions.jsonl``.

    Files that cannot be decoded get a line with an ``error`` instead of predictions.
    """
    import torch

    from sm_imgclf.serving.handler import Batch

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"No images under {folder}.")
    model = model_fn(str(package))
    output.mkdir(parents=True, exist_ok=True)
    with (output / OUTPUT_NAME).open("w") as sink:
        for start in range(0, len(files), batch_size):
            decoded, lines = [], []
            for path in files[start:start + batch_size]:
                try:
                    decoded.append(decode_image(path.read_bytes(), model.image_size))
                    lines.append({"file": path.relative_to(folder).as_posix()})
                except RequestError as error:
                    sink.write(json.dumps({"file": path.relative_to(folder).as_posix(),
                                           "error": str(error)}) + "\n")
            if decoded:
                result = predict_fn(Batch(torch.stack(decoded), top_k), model)
                rows = top_k_rows(result["probabilities"], result)
                for line, row in zip(lines, rows, strict=True):
                    sink.write(json.dumps({**line, **row}) + "\n")
    return output / OUTPUT_NAME
