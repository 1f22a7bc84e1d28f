"""The inference handler: SageMaker's model_fn / input_fn / predict_fn / output_fn.

The model is rebuilt from the package manifest (architecture, head, classes,
input size, normalisation); requests are preprocessed exactly as evaluation
was during training. Inputs are image bytes or JSON ``{"instances": [{"b64":
...}]}``; URLs in requests are never fetched.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.job.images import eval_tensor, normalise
from sm_imgclf.job.package import WEIGHTS_NAME, read_manifest
from sm_imgclf.models.registry import HeadSpec, rebuild_model

if TYPE_CHECKING:
    import torch

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "application/x-image", "image/webp",
                         "image/bmp"})
DEFAULT_TOP_K = 5


class RequestError(ValueError):
    """A request the handler cannot serve; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LoadedModel:
    """A model ready to serve, with what its manifest says about it."""

    model: Any
    manifest: dict[str, Any]
    device: Any

    @property
    def image_size(self) -> int:
        """Side of the square input."""
        return int(self.manifest["image_size"])


@dataclass
class Batch:
    """Preprocessed images and the options of the request."""

    images: Any
    top_k: int


def model_fn(model_dir: str) -> LoadedModel:
    """Rebuild the model described by ``manifest.json`` and load ``model.pth``."""
    import torch

    folder = Path(model_dir)
    manifest = read_manifest(folder)
    model = rebuild_model(manifest["architecture"], HeadSpec(**manifest["head"]))
    state = torch.load(folder / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return LoadedModel(model.to(device).eval(), manifest, device)


def input_fn(body: bytes | str, content_type: str, model: LoadedModel | None = None) -> Batch:
    """Decode one image, or a JSON batch of base64 images, into a uint8 batch."""
    import torch

    size = model.image_size if model is not None else 224
    media = (content_type or "").split(";")[0].strip().lower()
    data = body.encode() if isinstance(body, str) else body
    if media in IMAGE_TYPES:
        return Batch(torch.stack([_decode(data, size)]), DEFAULT_TOP_K)
    if media == "application/json":
        payload = _json(data)
        images = [_decode(_b64(item), size) for item in payload["instances"]]
        return Batch(torch.stack(images), int(payload.get("top_k", DEFAULT_TOP_K)))
    raise RequestError(f"Unsupported content type {content_type!r}; send one of "
                       f"{sorted(IMAGE_TYPES | {'application/json'})}.", status=415)


def predict_fn(batch: Batch, model: LoadedModel) -> list[dict[str, Any]]:
    """Return, per image, the top-k classes with ids, display names and probabilities."""
    import torch

    manifest = model.manifest
    inputs = normalise(batch.images.to(model.device), tuple(manifest["mean"]),
                       tuple(manifest["std"]))
    with torch.inference_mode():
        probabilities = torch.softmax(model.model(inputs).float(), dim=1).cpu()
    k = max(1, min(batch.top_k, probabilities.shape[1]))
    scores, indices = probabilities.topk(k, dim=1)
    return [
        {"predictions": [
            {"index": int(i), "class_id": manifest["class_ids"][int(i)],
             "label": manifest["class_names"][int(i)], "probability": float(p)}
            for p, i in zip(row_scores, row_indices, strict=True)]}
        for row_scores, row_indices in zip(scores, indices, strict=True)
    ]


def output_fn(prediction: list[dict[str, Any]], accept: str = "application/json") -> str:
    """Serialise predictions as JSON."""
    if (accept or "application/json").split(";")[0].strip() not in ("application/json", "*/*"):
        raise RequestError(f"Cannot answer in {accept!r}; accept application/json.", status=406)
    return json.dumps({"predictions": prediction})


def _decode(data: bytes, size: int) -> torch.Tensor:
    try:
        return eval_tensor(data, size)
    except Exception as error:
        raise RequestError(f"Cannot decode the image: {type(error).__name__}: {error}") from None


def _json(data: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as error:
        raise RequestError(f"The body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list) \
            or not payload["instances"]:
        raise RequestError('Expected JSON {"instances": [{"b64": "<base64 image>"}, ...]}.')
    return payload


def _b64(item: Any) -> bytes:
    if not isinstance(item, dict) or not isinstance(item.get("b64"), str):
        raise RequestError('Each instance must be {"b64": "<base64 image>"}; URLs are not '
                           "fetched.")
    try:
        return base64.b64decode(item["b64"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(f"An instance is not valid base64: {error}") from None
