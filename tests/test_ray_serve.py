"""The model package under Ray Serve, as AWS's Ray Serve SageMaker image runs it.

Requests served together answer as each would alone (no Ray needed). Then,
with ``nox -s rayserve`` (``-m rayserve``; the main suite deselects it), the
package is laid out as ``/opt/ml/model`` and started exactly as the image's
``sagemaker_entrypoint.sh`` starts it: ``ray start --head``, ``serve start``,
``serve run config.yaml`` with the package and its ``code/`` on ``PYTHONPATH``.
Requests reach its route ``/`` with the headers the image's adapter forwards.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sm_imgclf._archive import safe_extract
from sm_imgclf.backends.local.processes import free_port
from sm_imgclf.runtime.serving.handler import RequestError, input_fn, output_fn, predict_fn
from sm_imgclf.runtime.serving.requests import Request, serve_together
from test_serving import BAD_REQUESTS, trained  # noqa: F401 (a fixture)
from test_toolkits import payloads

BIN = Path(sys.executable).parent


def alone(loaded: Any, request: Request) -> tuple[int, bytes]:
    try:
        batch = input_fn(request.body, request.content_type, loaded)
        return 200, output_fn(predict_fn(batch, loaded), request.accept)
    except RequestError as error:
        return error.status, error.message.encode()


def same_answer(got: bytes, expected: bytes, accept: str) -> bool:
    if accept == "application/x-npy":
        return np.allclose(np.load(io.BytesIO(got)), np.load(io.BytesIO(expected)), atol=1e-5)
    if not got.startswith(b"{"):  # a refusal: the same message (objects' addresses aside)
        return re.sub(rb" at 0x[0-9a-f]+", b"", got) == re.sub(rb" at 0x[0-9a-f]+", b"", expected)
    rows = [json.loads(b)["predictions"] for b in (got, expected)]
    scores = [[[c["probability"] for c in r["top_k"]] for r in p] for p in rows]
    labels = [[[c["label"] for c in r["top_k"]] for r in p] for p in rows]
    return labels[0] == labels[1] and np.allclose(scores[0], scores[1], atol=1e-5)


def mixed_requests(trained: dict) -> list[Request]:  # noqa: F811
    kinds = payloads(trained["test"])
    good = [Request(body, kind, "application/json") for body, kind in kinds.values()]
    bad = [Request(body, kind, "application/json") for body, kind, _, _ in BAD_REQUESTS[:4]]
    npy = Request(*kinds["png"], "application/x-npy")
    refused = Request(*kinds["png"], "text/html")
    return [good[0], bad[0], good[1], refused, good[2], npy, bad[3], good[3]]


def test_requests_served_together_answer_as_each_alone(trained: dict) -> None:  # noqa: F811
    loaded = trained["loaded"]
    requests = mixed_requests(trained)
    answers = serve_together(requests, loaded)
    for request, answer in zip(requests, answers, strict=True):
        status, body = alone(loaded, request)
        assert answer.status == status, (request.content_type, answer.body[:200])
        assert same_answer(answer.body, body, request.accept)
    assert [a.content_type for a in answers][:4] == [
        "application/json",
        "text/plain",
        "application/json",
        "text/plain",
    ]
    assert answers[5].content_type == "application/x-npy"


def test_a_package_carries_what_the_ray_serve_image_runs(trained: dict) -> None:  # noqa: F811
    package = trained["package"]
    config = (package / "config.yaml").read_text()
    assert "import_path: sm_imgclf.runtime.serving.ray_app:build" in config
    assert "route_prefix: /" in config
    shipped = package / "code/sm_imgclf/runtime/serving"
    assert (shipped / "ray_app.py").is_file() and (shipped / "requests.py").is_file()


def _run(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / args[0]), *args[1:]], env=env, check=True, capture_output=True)


def _post(url: str, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]:
    # What the image's adapter forwards: the body, Content-Type and Accept.
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type, "Accept": accept}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read(), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


@pytest.fixture(scope="module")
def ray_serve(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """The package served as the image serves it; the URL of its route ``/``."""
    model = tmp_path_factory.mktemp("opt-ml") / "model"  # /opt/ml/model, extracted
    safe_extract(trained["job"].model_uri.removeprefix("file://"), model)
    if (model / "code/requirements.txt").is_file():
        _run("pip", "install", "-r", str(model / "code/requirements.txt"), env=dict(os.environ))
    gcs, http = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{model}:{model / 'code'}",
        "RAY_ADDRESS": f"127.0.0.1:{gcs}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    start = ["ray", "start", "--head", f"--port={gcs}", "--include-dashboard=False"]
    _run(*start, "--num-gpus=0", "--disable-usage-stats", env=env)
    log = model.parent / "serve.log"
    served = None
    try:
        _run("serve", "start", "--http-host=127.0.0.1", f"--http-port={http}", env=env)
        with log.open("wb") as out:
            served = subprocess.Popen(
                [str(BIN / "serve"), "run", str(model / "config.yaml")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{http}/"
        _wait_until_it_answers(url, served, log, trained)
        yield url
    finally:
        if served is not None:
            served.terminate()
            served.wait()
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True)


def _wait_until_it_answers(url: str, served: Any, log: Path, trained: dict) -> None:  # noqa: F811
    body, kind = payloads(trained["test"])["png"]
    last: tuple[int, bytes, str] = (0, b"", "")
    while served.poll() is None:  # the state waited for: a 200, or serve run exiting
        try:
            last = _post(url, body, kind, "application/json")
            if last[0] == 200:
                return
        except (ConnectionError, urllib.error.URLError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"serve run exited: {log.read_text()[-3000:]}; last answer {last[:2]!r}")


@pytest.mark.rayserve
@pytest.mark.slow
def test_ray_serve_answers_like_the_handler(ray_serve: str, trained: dict) -> None:  # noqa: F811
    loaded = trained["loaded"]
    for request in mixed_requests(trained):
        status, body, kind = _post(ray_serve, request.body, request.content_type, request.accept)
        expected_status, expected = alone(loaded, request)
        assert status == expected_status, (request.content_type, body[:300])
        assert same_answer(body, expected, request.accept)
        if status != 200:
            assert kind.startswith("text/plain")
    for body, content_type, status, message in BAD_REQUESTS:
        got = _post(ray_serve, body, content_type, "application/json")
        assert got[0] == status and message.encode() in got[1], (content_type, got[1][:300])


@pytest.mark.rayserve
@pytest.mark.slow
def test_ray_serve_batches_concurrent_requests_right(ray_serve: str, trained: dict) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    files = sorted(trained["test"].glob("*/*.png"))[:24]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda f: _post(ray_serve, f.read_bytes(), "image/png", "application/x-npy"), files
            )
        )
    loaded = trained["loaded"]
    for path, (status, body, _) in zip(files, answers, strict=True):
        assert status == 200
        expected = predict_fn(input_fn(path.read_bytes(), "image/png", loaded), loaded)
        got = torch.from_numpy(np.load(io.BytesIO(body)))
        assert torch.allclose(got, expected["probabilities"], atol=1e-5)
