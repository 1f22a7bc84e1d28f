"""EndpointClient: predictions with class names from any deployed endpoint."""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from sm_imgclf._inputs import encode
from sm_imgclf._params import bad_value
from sm_imgclf.contracts.deploy import SERVERLESS_PAYLOAD_LIMIT
from sm_imgclf.contracts.prediction import Prediction
from sm_imgclf.errors import BackendError, EndpointError

if TYPE_CHECKING:
    from sm_imgclf.evaluation.evaluate import Evaluation
    from sm_imgclf.session import Session


class EndpointClient:
    """Queries an endpoint; as a context manager it deletes the endpoint on exit.

    Args:
        name: The endpoint name.
        session: The session whose backend serves it.
        owned: Delete the endpoint when the ``with`` block ends.
    """

    def __init__(self, name: str, session: Session, *, owned: bool = False) -> None:
        self.name, self.session, self.owned = name, session, owned

    def __repr__(self) -> str:
        return f"EndpointClient({self.name!r}, session={self.session!r})"

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.delete()

    @classmethod
    def attach(cls, name: str, session: Session) -> EndpointClient:
        """Return a client for an existing endpoint (raises if there is none)."""
        session.backend.describe_endpoint(name)
        return cls(name, session)

    def delete(self) -> None:
        """Delete the endpoint and what was created for it."""
        self.session.backend.delete_endpoint(self.name)

    @overload
    def predict(
        self, images: list[Any] | tuple[Any, ...], *, top_k: int | None = None
    ) -> list[Prediction]: ...

    @overload
    def predict(self, images: Any, *, top_k: int | None = None) -> Prediction: ...

    def predict(self, images: Any, *, top_k: int | None = None) -> Prediction | list[Prediction]:
        """Classify one image or a list of them.

        Args:
            images: A path, bytes, a PIL image or a uint8 numpy array (H, W, 3),
                or a list of those.
            top_k: Classes to return per image; by default the endpoint's own
                (``DeployOptions.top_k``, 5 unless set).

        Returns:
            A :class:`~sm_imgclf.Prediction` for one image, a list for a list.
        """
        single = not isinstance(images, list | tuple)
        items = [images] if single else list(images)
        asked = {} if top_k is None else {"top_k": top_k}
        predictions: list[Prediction] = []
        for chunk in _chunks([encode(item) for item in items], self.max_payload_bytes):
            body = json.dumps(
                {"instances": [{"b64": base64.b64encode(b).decode()} for b in chunk], **asked}
            ).encode()
            answer = json.loads(self.invoke(body, "application/json"))
            predictions += [_prediction(row) for row in answer["predictions"]]
        return predictions[0] if single else predictions

    @functools.cached_property
    def max_payload_bytes(self) -> int:
        """The largest request the endpoint takes: 4 MB when serverless, else 6 MB.

        Asked of the backend once; if it cannot say, the smaller limit is used.
        """
        try:
            limit = self.session.backend.describe_endpoint(self.name).get("max_payload_bytes")
        except BackendError:
            limit = None
        return int(limit or SERVERLESS_PAYLOAD_LIMIT)

    @property
    def model_uri(self) -> str | None:
        """The model package the endpoint serves, where the backend says (local endpoints do)."""
        try:
            uri = self.session.backend.describe_endpoint(self.name).get("model_uri")
        except BackendError:
            return None
        return str(uri) if uri else None

    @property
    def forward(self) -> str | None:
        """The forward path the endpoint's server chose and why, where the backend says.

        Local endpoints do (``"onnxruntime (1.46x eager (...))"``); on SageMaker
        the choice is in the endpoint's CloudWatch log.
        """
        try:
            found = self.session.backend.describe_endpoint(self.name).get("forward")
        except BackendError:
            return None
        return str(found) if found else None

    def invoke(
        self, body: bytes, content_type: str, accept: str = "application/json", retries: int = 4
    ) -> bytes:
        """Send a raw request; 429 and 503 answers are retried with backoff."""
        for attempt in range(retries + 1):
            try:
                return self.session.backend.invoke(self.name, body, content_type, accept)
            except EndpointError as error:
                if error.status not in (429, 503) or attempt == retries:
                    raise
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def evaluate(
        self, folder: str | Path, *, top_k: int | None = None, plots: str | Path | None = None
    ) -> Evaluation:
        """Score every image of a labelled folder; see :class:`~sm_imgclf.Evaluation`.

        Args:
            folder: A folder with one sub-folder per class, or the channel URI an
                upload returned (``channels["test"]``: ``file://`` or, on a
                SageMaker session, ``s3://``, copied to the user's cache folder first).
            top_k: Classes asked per image (the endpoint's own by default).
            plots: A folder for the confusion and per-class plots.
        """
        from sm_imgclf.evaluation.channels import channel_folder
        from sm_imgclf.evaluation.evaluate import evaluate

        local = channel_folder(folder, self.session.backend.store)
        return evaluate(lambda path: self.predict(path, top_k=top_k), local, plots=plots)


def _chunks(blobs: Sequence[bytes], limit: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for blob in blobs:
        encoded = len(blob) * 4 // 3 + 64  # base64 and JSON overhead
        if encoded > limit:
            raise bad_value(
                "image",
                f"under {limit * 3 // 4:,} bytes to fit one request",
                f"{len(blob):,} bytes",
            )
        if chunk and (size + encoded > limit or len(chunk) == 64):
            yield chunk
            chunk, size = [], 0
        chunk.append(blob)
        size += encoded
    if chunk:
        yield chunk


def _prediction(row: dict[str, Any]) -> Prediction:
    best = row["top_k"][0]
    return Prediction(
        best["label"],
        best["index"],
        best["class_id"],
        best["probability"],
        tuple((c["label"], c["probability"]) for c in row["top_k"]),
        tuple(c["class_id"] for c in row["top_k"]),
    )
