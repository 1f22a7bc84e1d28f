"""The inference handler: SageMaker's model_fn / input_fn / predict_fn / output_fn.

The model is rebuilt from the package manifest (architecture, head, classes,
input size, normalisation); requests are preprocessed exactly as evaluation
was during training. Bodies are image bytes, a NumPy array (one image or a
batch) or JSON ``{"instances": [{"b64": ...}], "top_k": 5}``. Nothing a request
names is fetched (no URLs, no S3 objects): images in S3 are scored by a batch
transform, which reads them itself.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.contracts.deploy import DEFAULT_TOP_K as TOP_K
from sm_imgclf.contracts.deploy import MAX_PIXELS as DEFAULT_MAX_PIXELS
from sm_imgclf.runtime.images import normalise, resize_size, square_tensor
from sm_imgclf.runtime.models import HeadSpec, rebuild_model
from sm_imgclf.runtime.package import MANIFEST_NAME, WEIGHTS_NAME, read_manifest
from sm_imgclf.runtime.serving.forward import ForwardChoice, choose

if TYPE_CHECKING:
    import torch

IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/png", "application/x-image", "image/webp", "image/bmp"}
)
NPY = "application/x-npy"
JSON = "application/json"
DEFAULT_TOP_K = int(os.environ.get("SM_IMGCLF_TOP_K", str(TOP_K)))
MAX_PIXELS = int(os.environ.get("SM_IMGCLF_MAX_PIXELS", str(DEFAULT_MAX_PIXELS)))
MAX_IMAGES = 256
# What Pillow raises for bytes it cannot decode (truncated, corrupt, unknown or hostile
# files); anything else while decoding is a fault of the server, answered with a 500.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


if TYPE_CHECKING:
    _ToolkitError = Exception
else:
    try:
        # Inside AWS's inference toolkit only this type's status code reaches the client;
        # anything else becomes a 500.
        from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
    except ImportError:
        _ToolkitError = Exception


class RequestError(ValueError, _ToolkitError):
    """A request the handler cannot serve; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        ValueError.__init__(self, message)
        self.status = self.status_code = status
        self.message, self.phrase = message, HTTPStatus(status).phrase


@dataclass
class LoadedModel:
    """A model ready to serve, with what its manifest says about it.

    ``forward`` is the path chosen when it loaded (see :mod:`.forward`).
    """

    model: Any
    manifest: dict[str, Any]
    device: Any
    forward: ForwardChoice = field(default_factory=lambda: ForwardChoice("eager", "default"))

    @property
    def image_size(self) -> int:
        """Side of the square input."""
        return int(self.manifest["image_size"])


@dataclass
class Batch:
    """Preprocessed images (uint8 NCHW) and the options of the request."""

    images: Any
    top_k: int


def model_fn(model_dir: str, context: Any = None) -> LoadedModel:
    """Rebuild the model described by ``manifest.json`` and load ``model.pth``.

    Args:
        model_dir: The extracted model package.
        context: The model server's context; AWS's inference toolkit passes it to a
            ``model_fn`` that takes two arguments, and its ``system_properties``
            name the GPU of this TorchServe worker (``gpu_id``).
    """
    import torch

    folder = Path(model_dir)
    if not (folder / MANIFEST_NAME).is_file():
        raise FileNotFoundError(
            f"{folder} is not an sm-imgclf model package: {MANIFEST_NAME} is missing. Deploy "
            "the model.tar.gz a TransferLearningEstimator job produced."
        )
    manifest = read_manifest(folder)
    code = str(folder / "code")
    if manifest.get("source") == "module" and code not in sys.path:
        # The user's module travels in code/; appended, so the installed library wins.
        sys.path.append(code)
    model = rebuild_model(manifest["architecture"], HeadSpec(**manifest["head"]))
    state = torch.load(folder / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    device = serving_device(context)
    model = model.to(device).eval()
    forward = choose(model, int(manifest["image_size"]), device)
    return LoadedModel(model, manifest, device, forward)


def serving_device(context: Any = None) -> torch.device:
    """The worker's own GPU when the model server names one, else the GPU, else the CPU.

    Without it every TorchServe worker of a multi-GPU endpoint would load onto GPU 0.
    """
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    properties = getattr(context, "system_properties", None) or {}
    gpu = properties.get("gpu_id")
    return torch.device("cuda" if gpu is None else f"cuda:{int(gpu)}")


def input_fn(body: bytes | str, content_type: str, model: LoadedModel | None = None) -> Batch:
    """Decode a request body into a uint8 batch at the model's input size."""
    import torch

    size = model.image_size if model is not None else 224
    media = (content_type or "").split(";")[0].strip().lower()
    data = body.encode() if isinstance(body, str) else body
    if not data:
        raise RequestError("The request body is empty; send an image.")
    if media in IMAGE_TYPES:
        return Batch(torch.stack([decode_image(data, size)]), DEFAULT_TOP_K)
    if media == NPY:
        return Batch(_from_npy(data, size), DEFAULT_TOP_K)
    if media == JSON:
        payload = _json(data)
        images = [decode_image(_instance_bytes(item), size) for item in payload["instances"]]
        return Batch(torch.stack(images), _top_k(payload.get("top_k", DEFAULT_TOP_K)))
    raise RequestError(
        f"Unsupported content type {content_type or '(none)'!r}; send one of "
        f"{sorted(IMAGE_TYPES | {NPY, JSON})}.",
        status=415,
    )


def predict_fn(batch: Batch, model: LoadedModel) -> dict[str, Any]:
    """Return the class probabilities of every image, with what ``output_fn`` needs."""
    import torch

    manifest = model.manifest
    inputs = model.forward.inputs(
        normalise(batch.images.to(model.device), tuple(manifest["mean"]), tuple(manifest["std"]))
    )
    with torch.inference_mode():
        logits = model.forward.logits(model.model, inputs)
        probabilities = torch.softmax(logits.float(), dim=1).cpu()
    return {
        "probabilities": probabilities,
        "top_k": batch.top_k,
        "class_ids": manifest["class_ids"],
        "class_names": manifest["class_names"],
    }


def answer_type(accept: str | None) -> str:
    """The content type to answer ``accept`` with: ``.npy`` or JSON; refused with a 406 else."""
    media = (accept or JSON).split(";")[0].strip().lower()
    if media not in (JSON, NPY, "*/*"):
        raise RequestError(f"Cannot answer in {accept!r}; accept {JSON} or {NPY}.", status=406)
    return NPY if media == NPY else JSON


def output_fn(prediction: dict[str, Any], accept: str = JSON) -> bytes:
    """Serialise predictions: JSON top-k per image, or raw probabilities as ``.npy``."""
    probabilities = prediction["probabilities"]
    if answer_type(accept) == NPY:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, probabilities.numpy(), allow_pickle=False)
        return buffer.getvalue()
    return json.dumps({"predictions": top_k_rows(probabilities, prediction)}).encode()


def transform_fn(
    model: LoadedModel, body: bytes, content_type: str, accept: str
) -> tuple[bytes, str]:
    """Serve one request whole: what AWS's inference toolkit calls.

    The toolkit would call ``input_fn`` without the model (it passes its own
    request context instead), so the package's ``inference.py`` exports this
    function and :func:`model_fn` only.

    Returns:
        The answer and its content type.
    """
    answer = output_fn(predict_fn(input_fn(body, content_type, model), model), accept)
    return answer, answer_type(accept)


def top_k_rows(probabilities: torch.Tensor, prediction: dict[str, Any]) -> list[dict[str, Any]]:
    """Per image, the top-k classes with index, id, display name and probability."""
    k = max(1, min(int(prediction["top_k"]), probabilities.shape[1]))
    scores, indices = probabilities.topk(k, dim=1)
    ids, names = prediction["class_ids"], prediction["class_names"]
    return [
        {
            "top_k": [
                {
                    "index": int(i),
                    "class_id": ids[int(i)],
                    "label": names[int(i)],
                    "probability": float(p),
                }
                for p, i in zip(s, x, strict=True)
            ]
        }
        for s, x in zip(scores, indices, strict=True)
    ]


def decode_image(data: bytes, size: int) -> torch.Tensor:
    """Decode bytes as training's evaluation did; oversized images are refused with 413."""
    from PIL import Image

    from sm_imgclf.runtime.images import open_rgb

    refused = (*_DECODE_ERRORS, Image.DecompressionBombError)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except refused as error:
        raise RequestError(f"Cannot decode the image: {type(error).__name__}: {error}") from None
    if width * height > MAX_PIXELS:
        raise RequestError(
            f"The image has {width}x{height} = {width * height:,} pixels, over "
            f"the limit of {MAX_PIXELS:,}; resize it first.",
            status=413,
        )
    shorter = resize_size(size)
    try:
        image = open_rgb(data, shorter)
    except refused as error:
        raise RequestError(f"Cannot decode the image: {type(error).__name__}: {error}") from None
    # Past decoding, a failure is the server's own fault: it must be a 500, not a 400.
    return square_tensor(image, size, shorter=shorter)


def _from_npy(data: bytes, size: int) -> torch.Tensor:
    import numpy as np
    import torch
    from PIL import Image

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # numpy's header parser raises tokenizer and syntax errors too
        raise RequestError(
            f"The body is not a .npy array: {type(error).__name__}: {error}"
        ) from None
    if array.ndim in (2, 3):
        array = array[None]
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or array.dtype != np.uint8:
        raise RequestError(
            "Expected uint8 images shaped (H, W, 3), (N, H, W, 3) or (H, W); "
            f"got {array.dtype} {array.shape}."
        )
    if len(array) == 0 or 0 in array.shape:
        raise RequestError(f"The array holds no image: shape {array.shape}.")
    if len(array) > MAX_IMAGES or array.shape[1] * array.shape[2] > MAX_PIXELS:
        raise RequestError(f"Too many or too large images: {array.shape}.", status=413)
    shorter = resize_size(size)
    return torch.stack(
        [
            square_tensor(
                Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).convert(
                    "RGB"
                ),
                size,
                shorter=shorter,
            )
            for image in array
        ]
    )


def _json(data: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as error:
        raise RequestError(f"The body is not valid JSON: {error}") from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("instances"), list)
        or not payload["instances"]
    ):
        raise RequestError('Expected JSON {"instances": [{"b64": "<base64 image>"}, ...]}.')
    if len(payload["instances"]) > MAX_IMAGES:
        raise RequestError(f"At most {MAX_IMAGES} instances per request.", status=413)
    return payload


def _top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"top_k must be a positive integer; got {value!r}.")
    return value


def _instance_bytes(item: Any) -> bytes:
    if isinstance(item, dict) and isinstance(item.get("b64"), str):
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise RequestError(f"An instance is not valid base64: {error}") from None
    raise RequestError(
        'Each instance must be {"b64": "<base64 image>"}; URLs and S3 '
        "objects are never fetched (score images in S3 with batch_predict)."
    )
