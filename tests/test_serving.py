"""Serving: the handler, the local server over real HTTP, EndpointClient and evaluation."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import sm_imgclf as smi
from sm_imgclf._archive import safe_extract
from sm_imgclf.backends.local import serving as local_serving
from sm_imgclf.runtime.serving.handler import (
    RequestError,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
from sm_imgclf.runtime.serving.server import serve


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serving")
    smi.digits_to_folder(root / "images", limit_per_class=40)
    session = smi.LocalSession(root / "session")
    channels = (
        smi.ImageFolderDataset(root / "images").split(valid=0.2, test=0.2).upload(session, "digits")
    )
    job = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={"image_size": 32, "epochs": 4, "lr": 0.003, "augmentation": "none"},
    ).fit(channels, logs=False)
    package = safe_extract(job.model_uri.removeprefix("file://"), root / "package")
    test_dir = Path(channels["test"].removeprefix("file://"))
    return {
        "session": session,
        "job": job,
        "package": package,
        "test": test_dir,
        "test_uri": channels["test"],
        "loaded": model_fn(str(package)),
    }


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def local_probabilities(trained: dict, data: bytes) -> torch.Tensor:
    loaded = trained["loaded"]
    return predict_fn(input_fn(data, "image/png", loaded), loaded)["probabilities"][0]


def test_handler_formats(trained: dict) -> None:
    loaded = trained["loaded"]
    files = sorted(trained["test"].glob("*/*.png"))[:3]
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    npy = io.BytesIO()
    np.save(npy, arrays)
    by_npy = predict_fn(input_fn(npy.getvalue(), "application/x-npy", loaded), loaded)
    one_by_one = torch.stack([local_probabilities(trained, f.read_bytes()) for f in files])
    assert torch.allclose(by_npy["probabilities"], one_by_one, atol=1e-5)
    raw = np.load(io.BytesIO(output_fn(by_npy, "application/x-npy")))
    assert raw.shape == (3, 10) and np.allclose(raw.sum(1), 1, atol=1e-5)
    body = json.dumps(
        {
            "instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files],
            "top_k": 3,
        }
    )
    answer = json.loads(output_fn(predict_fn(input_fn(body, "application/json", loaded), loaded)))
    assert [len(row["top_k"]) for row in answer["predictions"]] == [3, 3, 3]
    best = answer["predictions"][0]["top_k"][0]
    assert best["label"] == loaded.manifest["class_names"][best["index"]]


def jpeg_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


BAD_REQUESTS = [
    (b"\x00garbage\xff" * 10, "image/jpeg", 400, "Cannot decode"),
    (jpeg_bytes((300, 300))[:400], "image/jpeg", 400, "Cannot decode"),
    (b"", "image/jpeg", 400, "empty"),
    (jpeg_bytes(), "text/plain", 415, "Unsupported content type"),
    (jpeg_bytes(), "", 415, "Unsupported content type"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (
        b'{"instances": [{"url": "http://169.254.169.254/latest"}]}',
        "application/json",
        400,
        "never fetched",
    ),
    (b'{"instances": [{"s3": "s3://bucket/key.jpg"}]}', "application/json", 400, "S3 objects"),
    (b'{"instances": [{"b64": "%%%"}]}', "application/json", 400, "base64"),
    (b'{"instances": []}', "application/json", 400, "Expected JSON"),
    (b"not an npy file", "application/x-npy", 400, "not a .npy"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_the_right_status(
    trained: dict, body: bytes, content_type: str, status: int, message: str
) -> None:
    with pytest.raises(RequestError, match=message) as caught:
        input_fn(body, content_type, trained["loaded"])
    assert caught.value.status == status


def test_fifty_megapixel_image_is_refused_without_decoding(trained: dict) -> None:
    huge = png(Image.new("L", (8000, 6250)))
    with pytest.raises(RequestError, match="50,000,000 pixels") as caught:
        input_fn(huge, "image/png", trained["loaded"])
    assert caught.value.status == 413


def test_an_internal_failure_after_decoding_is_not_a_bad_request(
    trained: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf.runtime.serving import handler

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of shared memory")

    monkeypatch.setattr(handler, "square_tensor", broken)
    with pytest.raises(RuntimeError, match="shared memory"):  # the server answers 500
        input_fn(jpeg_bytes(), "image/jpeg", trained["loaded"])
    with pytest.raises(RequestError, match="Cannot decode"):  # bad bytes are still a 400
        input_fn(b"\x00garbage\xff" * 10, "image/jpeg", trained["loaded"])


def test_package_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.json is missing"):
        model_fn(str(tmp_path))


@pytest.fixture(scope="module")
def endpoint(trained: dict):  # type: ignore[no-untyped-def]
    client = trained["job"].deploy("digits-endpoint", options=smi.DeployOptions(max_wait_ms=20.0))
    yield client
    client.delete()


def call(
    endpoint: smi.EndpointClient,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    port = endpoint.session.backend.describe_endpoint(endpoint.name)["port"]
    return post(port, method, path, body, headers or {})


def post(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    return local_serving._request(port, method, path, body, headers, timeout=30)


def test_endpoint_predictions_match_the_model(trained: dict, endpoint: smi.EndpointClient) -> None:
    assert call(endpoint, "GET", "/ping")[0] == 200
    chosen = endpoint.forward  # the server's own account of its forward path
    assert chosen is not None and chosen.split()[0] in ("eager", "channels_last", "onnxruntime")
    assert "batch 1 at 32 px" in chosen or "SM_IMGCLF_FORWARD" in chosen
    files = sorted(trained["test"].glob("*/*.png"))[:12]
    predictions = endpoint.predict(files, top_k=3)
    for path, prediction in zip(files, predictions, strict=True):
        expected = local_probabilities(trained, path.read_bytes())
        assert prediction.index == int(expected.argmax())
        assert prediction.score == pytest.approx(float(expected.max()), abs=1e-4)
        assert prediction.label == trained["loaded"].manifest["class_names"][prediction.index]
        assert len(prediction.top_k) == 3
    array = np.asarray(Image.open(files[0]).convert("RGB"))
    assert endpoint.predict(array).index == predictions[0].index
    assert endpoint.predict(Image.open(files[0])).index == predictions[0].index


def test_concurrent_requests_are_batched_and_all_right(
    trained: dict, endpoint: smi.EndpointClient
) -> None:
    files = sorted(trained["test"].glob("*/*.png"))[:32]
    expected = [int(local_probabilities(trained, f.read_bytes()).argmax()) for f in files]
    answers: dict[int, int] = {}

    def ask(i: int) -> None:
        answers[i] = endpoint.predict(files[i]).index

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answers[i] for i in range(len(files))] == expected


@pytest.mark.parametrize(("body", "content_type", "status", "message"), BAD_REQUESTS[:7])
def test_server_answers_bad_requests_and_keeps_serving(
    endpoint: smi.EndpointClient, body: bytes, content_type: str, status: int, message: str
) -> None:
    code, answer = call(
        endpoint,
        "POST",
        "/invocations",
        body,
        {"Content-Type": content_type} if content_type else {},
    )
    assert code == status and message in json.loads(answer)["error"]
    assert call(endpoint, "GET", "/ping")[0] == 200
    assert (
        call(endpoint, "POST", "/invocations", jpeg_bytes(), {"Content-Type": "image/jpeg"})[0]
        == 200
    )


def test_payload_over_the_limit(endpoint: smi.EndpointClient) -> None:
    code, answer = call(
        endpoint, "POST", "/invocations", b"x" * (6 * 2**20 + 1), {"Content-Type": "image/jpeg"}
    )
    assert code == 413 and "exceeds the limit" in json.loads(answer)["error"]
    assert call(endpoint, "GET", "/ping")[0] == 200
    with pytest.raises(smi.EndpointError, match="415") as caught:
        endpoint.invoke(b"hello", "text/plain")
    assert caught.value.status == 415


def test_dynamic_batching_groups_requests(trained: dict) -> None:
    server = serve(str(trained["package"]), port=0, max_batch=64, max_wait=0.2)
    try:
        while server.batcher is None:
            threading.Event().wait(0.05)
        data = jpeg_bytes()
        results = []

        def ask() -> None:
            status, answer = post(
                server.server_address[1],
                "POST",
                "/invocations",
                data,
                {"Content-Type": "image/jpeg"},
            )
            results.append((status, json.loads(answer)))

        threads = [threading.Thread(target=ask) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [status for status, _ in results] == [200] * 16
        assert server.batcher.batches < 16
    finally:
        server.shutdown()
        server.server_close()


def test_evaluate_with_plots(trained: dict, endpoint: smi.EndpointClient, tmp_path: Path) -> None:
    result = endpoint.evaluate(trained["test"], plots=tmp_path / "plots")
    files = sorted(trained["test"].glob("*/*.png"))
    right = sum(
        int(local_probabilities(trained, f.read_bytes()).argmax())
        == trained["loaded"].manifest["class_ids"].index(f.parent.name)
        for f in files
    )
    assert result.images == len(files)
    assert result.accuracy == pytest.approx(right / len(files))
    assert len(result.misclassified) == len(files) - right
    assert sum(map(sum, result.confusion)) == len(files)
    assert result.top_k_accuracy >= result.accuracy
    assert set(result.latency_ms) == {"p50", "p95", "p99"}
    for plot in result.plots:
        assert Image.open(plot).size[0] > 100


def test_context_manager_deletes_the_endpoint(trained: dict) -> None:
    session = trained["session"]
    with trained["job"].deploy("short-lived") as client:
        assert client.predict(jpeg_bytes()).label
    with pytest.raises(smi.BackendError, match="No local endpoint named 'short-lived'"):
        smi.EndpointClient.attach("short-lived", session)


def test_endpoint_settings_reach_the_local_server(trained: dict) -> None:
    options = smi.DeployOptions(top_k=2, forward="eager", max_pixels=100 * 100)
    with trained["job"].deploy("settings", options=options) as client:
        assert len(client.predict(jpeg_bytes()).top_k) == 2  # the endpoint's own default
        assert len(client.predict(jpeg_bytes(), top_k=4).top_k) == 4  # a request still asks
        assert client.forward is not None and client.forward.startswith("eager")
        with pytest.raises(smi.EndpointError) as caught:
            client.predict(jpeg_bytes((120, 120)))  # 14,400 pixels: over this endpoint's limit
        assert caught.value.status == 413
    mine = smi.DeployOptions(top_k=2, environment={"SM_IMGCLF_TOP_K": "3"})
    with trained["job"].deploy("settings", options=mine) as client:
        assert len(client.predict(jpeg_bytes()).top_k) == 3  # environment wins, as on SageMaker


def test_deploy_options_are_checked_before_anything_starts(trained: dict) -> None:
    with pytest.raises(smi.ConfigurationError, match="forward must be one of"):
        smi.DeployOptions(forward="fastest")
    with pytest.raises(smi.ConfigurationError, match="options must be a DeployOptions"):
        trained["job"].deploy("bad", options={"top_k": 2})
    with pytest.raises(smi.BackendError, match="No local endpoint named 'bad'"):
        smi.EndpointClient.attach("bad", trained["session"])


def test_evaluate_takes_the_channel_uri_an_upload_returned(
    trained: dict, endpoint: smi.EndpointClient
) -> None:
    uri = trained["test_uri"]  # file://...
    assert endpoint.evaluate(uri).accuracy == endpoint.evaluate(trained["test"]).accuracy
    with pytest.raises(smi.ConfigurationError, match="folder must be a folder, a file:// URI"):
        endpoint.evaluate("s3://someone-else/test")


def test_fake_backend_endpoint() -> None:
    backend = smi.FakeBackend()
    client = smi.EndpointClient("e", smi.Session(backend))
    with pytest.raises(smi.BackendError, match="No fake endpoint"):
        client.predict(jpeg_bytes())
    from sm_imgclf.contracts.deploy import DeploySpec

    backend.deploy(DeploySpec("e", "memory://fake/m.tar.gz"))
    backend.answers.append(
        json.dumps(
            {
                "predictions": [
                    {
                        "top_k": [
                            {"index": 1, "class_id": "002.dog", "label": "dog", "probability": 0.9}
                        ]
                    }
                ]
            }
        ).encode()
    )
    assert client.predict(jpeg_bytes()).label == "dog"
    assert "top_k" not in json.loads(backend.requests[0][1])  # the endpoint's own applies
    answer = {"index": 1, "class_id": "002.dog", "label": "dog", "probability": 0.9}
    backend.answers.append(json.dumps({"predictions": [{"top_k": [answer]}]}).encode())
    client.predict(jpeg_bytes(), top_k=2)
    assert json.loads(backend.requests[1][1])["top_k"] == 2


def test_local_batch_predict(trained: dict, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "inbox"
    shutil.copytree(trained["test"], folder, ignore=shutil.ignore_patterns("manifest.json"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    output = trained["job"].batch_predict(folder.as_uri(), (tmp_path / "out").as_uri(), top_k=2)
    lines = [
        json.loads(line) for line in Path(output.removeprefix("file://")).read_text().splitlines()
    ]
    images = sorted(p for p in folder.rglob("*.png"))
    assert len(lines) == len(images) + 1
    errors = [line for line in lines if "error" in line]
    assert [e["file"] for e in errors] == ["broken.jpg"] and "Cannot decode" in errors[0]["error"]
    by_file = {line["file"]: line for line in lines if "error" not in line}
    sample = images[0]
    expected = int(local_probabilities(trained, sample.read_bytes()).argmax())
    assert by_file[sample.relative_to(folder).as_posix()]["top_k"][0]["index"] == expected
    assert all(len(line["top_k"]) == 2 for line in by_file.values())


class _Blocking(torch.nn.Module):
    """A model whose forward waits until released, to fill the batcher's queue."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.release.wait(10)
        return torch.zeros(inputs.shape[0], 2)


def test_full_queue_answers_503() -> None:
    from sm_imgclf.runtime.serving.batching import Batcher
    from sm_imgclf.runtime.serving.handler import Batch, LoadedModel

    blocking = _Blocking()
    manifest = {
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "class_ids": ["a", "b"],
        "class_names": ["a", "b"],
        "image_size": 8,
    }
    batcher = Batcher(
        LoadedModel(blocking, manifest, torch.device("cpu")), max_batch=1, max_wait=0, queue_size=1
    )
    batch = Batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1)
    first = threading.Thread(target=batcher.predict, args=(batch,))
    first.start()
    assert blocking.entered.wait(5)  # the first request is in the forward pass
    second = threading.Thread(target=batcher.predict, args=(batch,))
    second.start()
    while batcher.queue.qsize() < 1:
        threading.Event().wait(0.01)  # the second request waits in the queue
    with pytest.raises(RequestError, match="queue is full") as caught:
        batcher.predict(batch)
    assert caught.value.status == 503
    blocking.release.set()
    first.join(5)
    second.join(5)


def test_large_lists_are_sent_in_chunks_within_the_limit() -> None:
    from sm_imgclf.serving.client import _chunks

    blobs = [b"x" * 1000] * 10
    chunks = list(_chunks(blobs, limit=3000))
    assert [len(c) for c in chunks] == [2, 2, 2, 2, 2]
    assert sum(len(c) for c in chunks) == 10
    with pytest.raises(smi.ConfigurationError, match="to fit one request"):
        list(_chunks([b"x" * 5000], limit=3000))
    backend = smi.FakeBackend()
    from sm_imgclf.contracts.deploy import DeploySpec

    backend.deploy(DeploySpec("e", "memory://fake/m.tar.gz"))
    row = {"top_k": [{"index": 0, "class_id": "a", "label": "a", "probability": 1.0}]}
    backend.answers += [
        json.dumps({"predictions": [row] * 64}).encode(),
        json.dumps({"predictions": [row] * 6}).encode(),
    ]
    predictions = smi.EndpointClient("e", smi.Session(backend)).predict([jpeg_bytes()] * 70)
    assert len(predictions) == 70 and len(backend.requests) == 2


def test_npy_with_a_broken_header_is_a_bad_request() -> None:
    # Found by the reliability fuzzer: numpy's header parser raised a tokenizer error.
    body = b"\x93NUMPY\x01\x00@\x00" + b"\x00" * 61 + b"'''"
    with pytest.raises(RequestError) as caught:
        input_fn(body, "application/x-npy")
    assert caught.value.status == 400 and "not a .npy array" in str(caught.value)


@pytest.mark.parametrize("shape", [(0, 2, 2, 3), (2, 0, 2, 3), (3, 0, 3)])
def test_npy_without_images_is_a_bad_request(shape: tuple[int, ...]) -> None:
    # Found by the reliability fuzzer: an empty batch reached torch.stack.
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape, np.uint8))
    with pytest.raises(RequestError) as caught:
        input_fn(buffer.getvalue(), "application/x-npy")
    assert caught.value.status == 400


def _blocking_batcher(max_wait: float) -> tuple[Any, _Blocking]:
    from sm_imgclf.runtime.serving.batching import Batcher
    from sm_imgclf.runtime.serving.handler import LoadedModel

    blocking = _Blocking()
    manifest = {
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "class_ids": ["a", "b"],
        "class_names": ["a", "b"],
        "image_size": 8,
    }
    return Batcher(
        LoadedModel(blocking, manifest, torch.device("cpu")), max_batch=8, max_wait=max_wait
    ), blocking


def test_a_lone_request_never_waits_for_company() -> None:
    from sm_imgclf.runtime.serving.handler import Batch

    batcher, blocking = _blocking_batcher(max_wait=30.0)
    blocking.release.set()
    batch = Batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1)
    for _ in range(5):  # one at a time, as a client with concurrency 1 sends them
        with batcher.decoding():
            pass
        batcher.predict(batch)
    assert batcher.batches == 5 and batcher.waits == 0


def test_a_batch_waits_only_while_requests_are_being_decoded() -> None:
    from sm_imgclf.runtime.serving.handler import Batch

    batcher, blocking = _blocking_batcher(max_wait=30.0)
    batch = Batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1)
    first = threading.Thread(target=batcher.predict, args=(batch,))
    first.start()
    assert blocking.entered.wait(5)  # the batcher is busy with the first request
    with batcher.decoding():  # a third request is still being decoded ...
        others = [threading.Thread(target=batcher.predict, args=(batch,)) for _ in range(2)]
        for thread in others:
            thread.start()
        while batcher.queue.qsize() < 2:
            threading.Event().wait(0.01)
        blocking.release.set()
        while batcher.batches < 2:  # the next batch waits for it, for one forward's time
            threading.Event().wait(0.01)
    for thread in [first, *others]:
        thread.join(10)
    assert batcher.batches == 2 and batcher.waits == 1  # the two queued ones went together


@pytest.mark.parametrize(
    ("setting", "expected"), [("3", 3), ("", None), ("0", None), ("many", None)]
)
def test_decoding_takes_the_cores_the_forward_leaves(
    monkeypatch: pytest.MonkeyPatch, setting: str, expected: int | None
) -> None:
    from sm_imgclf.runtime.serving import server

    monkeypatch.setenv("SM_IMGCLF_DECODE_THREADS", setting)
    monkeypatch.setattr(server.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert server.decode_threads() == (expected or 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert server.decode_threads() == (expected or 1)  # never none
