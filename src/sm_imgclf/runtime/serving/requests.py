"""Requests served together: decoded one by one, predicted as one batch, answered apart.

What a Ray Serve replica does with the requests its ``@serve.batch`` gathered;
it needs no Ray, so it is tested without it. Every answer, status included, is
the one the handler gives a request served alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sm_imgclf.runtime.serving.handler import (
    JSON,
    NPY,
    Batch,
    LoadedModel,
    RequestError,
    input_fn,
    output_fn,
    predict_fn,
)

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Request:
    """One request as the SageMaker adapter forwards it."""

    body: bytes
    content_type: str
    accept: str


@dataclass(frozen=True)
class Answer:
    """What to send back: the body, its status and its content type."""

    body: bytes
    status: int
    content_type: str


def refusal(error: RequestError) -> Answer:
    """A refused request's answer: its message and status, as plain text."""
    return Answer(error.message.encode(), error.status, "text/plain")


def decode(request: Request, model: LoadedModel) -> Batch | Answer:
    """The request's images, or the refusal a malformed request gets."""
    media = (request.accept or JSON).split(";")[0].strip().lower()
    if media not in (JSON, NPY, "*/*"):  # refused before any work, as the handler would
        return refusal(
            RequestError(f"Cannot answer in {request.accept!r}; accept {JSON} or {NPY}.", 406)
        )
    try:
        return input_fn(request.body, request.content_type, model)
    except RequestError as error:
        return refusal(error)


def predict_together(batches: list[Batch], model: LoadedModel) -> list[torch.Tensor]:
    """Each batch's class probabilities, from one forward pass over all their images."""
    import torch

    together = Batch(torch.cat([b.images for b in batches]), 1)
    probabilities = predict_fn(together, model)["probabilities"]
    return list(probabilities.split([len(b.images) for b in batches]))


def answer(
    batch: Batch, probabilities: torch.Tensor, request: Request, model: LoadedModel
) -> Answer:
    """The answer to one request, from its share of the batch's probabilities."""
    prediction = {
        "probabilities": probabilities,
        "top_k": batch.top_k,
        "class_ids": model.manifest["class_ids"],
        "class_names": model.manifest["class_names"],
    }
    media = (request.accept or JSON).split(";")[0].strip().lower()
    return Answer(output_fn(prediction, request.accept), 200, NPY if media == NPY else JSON)


def serve_together(requests: list[Request], model: LoadedModel) -> list[Answer]:
    """Answer ``requests`` in order; the well-formed ones share one forward pass."""
    decoded = [decode(r, model) for r in requests]
    batches = [d for d in decoded if isinstance(d, Batch)]
    shares = iter(predict_together(batches, model) if batches else [])
    return [
        d if isinstance(d, Answer) else answer(d, next(shares), r, model)
        for d, r in zip(decoded, requests, strict=True)
    ]
