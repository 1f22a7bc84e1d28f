"""Requests served together: decoded one by one, predicted as one batch, answered apart.

What a Ray Serve replica does with the requests its ``@serve.batch`` gathered;
it needs no Ray, so it is tested without it. Every answer, status included, is
the one the handler gives a request served alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sm_imgclf.runtime.serving.handler import (
    Batch,
    LoadedModel,
    RequestError,
    answer_type,
    input_fn,
    output_fn,
    predict_fn,
)


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
    """The request's images, or the refusal a malformed request gets (before any work)."""
    try:
        answer_type(request.accept)
        return input_fn(request.body, request.content_type, model)
    except RequestError as error:
        return refusal(error)


def serve_together(requests: list[Request], model: LoadedModel) -> list[Answer]:
    """Answer ``requests`` in order; the well-formed ones share one forward pass."""
    import torch

    decoded = [decode(r, model) for r in requests]
    batches = [d for d in decoded if isinstance(d, Batch)]
    if not batches:
        return [d for d in decoded if isinstance(d, Answer)]
    together = predict_fn(Batch(torch.cat([b.images for b in batches]), 1), model)
    split = together["probabilities"].split([len(b.images) for b in batches])
    shares = iter(zip(batches, split, strict=True))
    answers = []
    for request, found in zip(requests, decoded, strict=True):
        if isinstance(found, Answer):
            answers.append(found)
            continue
        batch, probabilities = next(shares)
        prediction = {**together, "probabilities": probabilities, "top_k": batch.top_k}
        body = output_fn(prediction, request.accept)
        answers.append(Answer(body, 200, answer_type(request.accept)))
    return answers
