"""The model package as a Ray Serve application, for AWS's Ray Serve SageMaker image.

The image's entrypoint extracts the package to ``/opt/ml/model``, installs
``code/requirements.txt``, puts ``/opt/ml/model`` and ``/opt/ml/model/code`` on
``PYTHONPATH`` and runs ``serve run /opt/ml/model/config.yaml``, which names
:func:`build`. Its adapter on port 8080 answers ``/ping`` and forwards each
``/invocations`` body, with its ``Content-Type``, ``Accept`` and
``X-Amzn-SageMaker-*`` headers, to this application's route ``/`` on port 8000.
Ray Serve's own ``@serve.batch`` gathers concurrent requests into one forward
pass; every answer and status is the one the handler gives alone.

Imported only inside that image (or a test that runs it the same way): it needs Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request as HttpRequest
from starlette.responses import Response

from sm_imgclf.runtime.package import MANIFEST_NAME
from sm_imgclf.runtime.serving.handler import JSON, model_fn
from sm_imgclf.runtime.serving.requests import Answer, Request, serve_together

IMAGE_MODEL_DIR = "/opt/ml/model"


def package_dir() -> Path:
    """The extracted package: ``SM_IMGCLF_MODEL_DIR``, the image's folder, or this copy's."""
    given = os.environ.get("SM_IMGCLF_MODEL_DIR")
    if given:
        return Path(given)
    if (Path(IMAGE_MODEL_DIR) / MANIFEST_NAME).is_file():
        return Path(IMAGE_MODEL_DIR)
    return Path(__file__).resolve().parents[4]  # <package>/code/sm_imgclf/runtime/serving


@serve.deployment(max_ongoing_requests=64)
class Classifier:
    """One replica: the model loaded once, requests batched by Ray Serve."""

    def __init__(self, model_dir: str, max_batch_size: int, batch_wait_s: float) -> None:
        import torch

        self.model = model_fn(model_dir)
        if self.model.device.type == "cpu":
            # Ray gives an actor one thread unless told; the replica has the machine.
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        forward = self.model.forward
        print(
            f"model loaded from {model_dir}; forward: {forward.path} ({forward.reason}); "
            f"{torch.get_num_threads()} threads",
            flush=True,
        )
        self.predict_batch.set_max_batch_size(max_batch_size)
        self.predict_batch.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)  # type: ignore[untyped-decorator]
    async def predict_batch(self, requests: list[Request]) -> list[Answer]:
        """Requests gathered by Ray Serve, answered in their order."""
        return serve_together(requests, self.model)

    async def __call__(self, http: HttpRequest) -> Response:
        """One forwarded ``/invocations`` request."""
        request = Request(
            await http.body(),
            http.headers.get("content-type", ""),
            http.headers.get("accept", JSON),
        )
        answer = await self.predict_batch(request)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def build(args: dict[str, Any]) -> Any:
    """The application ``config.yaml`` names; ``args`` may set the batch's size and wait.

    A replica per GPU, each asking Ray for its GPU (Ray hides GPUs from actors
    that ask for none); one replica on a CPU instance.
    """
    import torch

    gpus = torch.cuda.device_count()
    # On CPUs the one replica asks for every core: Ray sets an actor's OMP_NUM_THREADS to
    # the CPUs it asked for (one by default), which starves ONNX Runtime and torch.
    actor = {"num_gpus": 1} if gpus else {"num_cpus": len(os.sched_getaffinity(0))}
    options = {"num_replicas": max(1, gpus), "ray_actor_options": actor}
    deployment: Any = Classifier  # a Ray Serve deployment, whatever mypy sees of the class
    return deployment.options(**options).bind(
        str(args.get("model_dir") or package_dir()),
        int(args.get("max_batch_size", 16)),
        float(args.get("batch_wait_s", 0.005)),
    )
