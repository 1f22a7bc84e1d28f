"""The training program and the model package inside AWS's own container toolkits.

``nox -s toolkits`` installs sagemaker-training, sagemaker-pytorch-training,
sagemaker-inference, sagemaker-pytorch-inference and TorchServe, then runs this
module (``-m toolkits``; the main suite deselects it). Every artifact comes
from the request the SageMaker backend sends to a moto server: the training
job's hyperparameters, its channels and the source tarball it uploaded.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
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
from PIL import Image

import sm_imgclf as smi
from helpers.backbones import write_source_dir
from helpers.images import manifest_text
from sm_imgclf.backends.local.processes import free_port
from sm_imgclf.runtime.serving.handler import input_fn, model_fn, output_fn, predict_fn

pytestmark = [pytest.mark.toolkits, pytest.mark.slow]
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def aws(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bucket on moto holding the digits, uploaded by a SageMakerSession."""
    import boto3

    boto = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    boto.client("s3", endpoint_url=moto_url).create_bucket(Bucket="sagemaker-toolkits")
    session = smi.SageMakerSession(
        "sagemaker-toolkits",
        role=ROLE,
        boto_session=boto,
        endpoint_urls={"s3": moto_url, "sagemaker": moto_url, "logs": moto_url},
    )
    root = tmp_path_factory.mktemp("toolkit-data")
    smi.digits_to_folder(root / "images", limit_per_class=12)
    data = smi.ImageFolderDataset(root / "images").split(valid=0.25, seed=0)
    channels = data.upload(session, "digits", progress=False)
    return {
        "session": session,
        "channels": channels,
        "boto": boto,
        "url": moto_url,
        "images": root / "images",
    }


def submitted_job(
    aws: dict[str, Any], model: str, name: str, source_dir: Path | None = None, epochs: int = 2
) -> dict[str, Any]:
    """Submit a job through the backend; return what the service recorded."""
    est = smi.TransferLearningEstimator(
        model,
        session=aws["session"],
        weights=None,
        trainable="all",
        source_dir=source_dir,
        hyperparameters={
            "image_size": 32,
            "epochs": epochs,
            "batch_size": 16,
            "augmentation": "none",
            "lr": 0.003,
        },
        compute=smi.Compute(image_uri=IMAGE),
    )
    est.fit(aws["channels"], wait=False, name=name)
    client = aws["boto"].client("sagemaker", endpoint_url=aws["url"])
    return dict(client.describe_training_job(TrainingJobName=name))


def download(aws: dict[str, Any], uri: str, target: Path) -> None:
    """Copy every object under ``uri`` into ``target``, as SageMaker's File mode does."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = aws["boto"].client("s3", endpoint_url=aws["url"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for item in (o for page in pages for o in page.get("Contents", [])):
        path = target / item["Key"][len(prefix) :].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(path))


def container_dirs(
    aws: dict[str, Any], job: dict[str, Any], base: Path, extra: dict[str, str] | None = None
) -> None:
    """Lay out ``SAGEMAKER_BASE_DIR`` as the platform does before the toolkit starts."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = dict(job["HyperParameters"])
    source = base / "sourcedir.tar.gz"
    bucket, _, key = hyperparameters["sagemaker_submit_directory"][5:].partition("/")
    aws["boto"].client("s3", endpoint_url=aws["url"]).download_file(bucket, key, str(source))
    hyperparameters["sagemaker_submit_directory"] = str(source)
    hyperparameters.update(extra or {})
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "localhost", "hosts": ["localhost"]})
    )
    channels = {}
    for channel in job["InputDataConfig"]:
        name = channel["ChannelName"]
        download(
            aws, channel["DataSource"]["S3DataSource"]["S3Uri"], base / "input" / "data" / name
        )
        channels[name] = {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
    (config / "inputdataconfig.json").write_text(json.dumps(channels))


def toolkit_env(base: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base),
        "SM_STUDIO_LOCAL_MODE": "true",
        "SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main",
        "PIP_NO_INDEX": "1",
        "TRAINING_JOB_NAME": name,
        "OMP_NUM_THREADS": "1",
        "SM_IMGCLF_CHECKPOINT_DIR": str(base / "checkpoints"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def run_training(base: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = toolkit_env(base, name)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "train")], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    print(f"toolkit training {name}: {time.perf_counter() - started:.1f} s")
    return done


# torchvision twice, timm, and a user's module shipped from its source_dir.
@pytest.fixture(
    scope="module", params=["resnet18", "mobilenet_v3_small", "timm:resnet18", "teamnets.tiny:tiny"]
)
def trained(
    request: pytest.FixtureRequest, aws: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A model trained by AWS's training toolkit from what the backend submitted."""
    model = request.param
    slug = re.sub(r"[^a-z0-9]+", "-", model)
    name = f"toolkit-{slug}"
    source_dir = None
    if model.startswith("teamnets"):
        source_dir = write_source_dir(tmp_path_factory.mktemp("team"))
    job = submitted_job(aws, model, name, source_dir)
    base = tmp_path_factory.mktemp(f"opt-ml-{slug}")
    container_dirs(aws, job, base)
    done = run_training(base, name)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"model": model, "base": base, "log": done.stdout + done.stderr, "job": job}


def test_training_toolkit_runs_the_job_and_leaves_the_package(trained: dict[str, Any]) -> None:
    base, log = trained["base"], trained["log"]
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()
    manifest = json.loads((base / "model" / "manifest.json").read_text())
    assert manifest["architecture"] == trained["model"]
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["hyperparameters"]["batch_size"] == 16  # typed after the toolkit's argv
    assert manifest["hyperparameters"]["lr"] == 0.003
    assert (base / "model" / "model.pth").is_file()
    assert (base / "model" / "code" / "inference.py").is_file()
    assert (base / "code" / "train.py").is_file()  # the toolkit unpacked our tarball
    if manifest["source"] == "module":  # shipped in the tarball, then in the package
        assert (base / "code" / "teamnets" / "tiny.py").is_file()
        assert (base / "model" / "code" / "teamnets" / "tiny.py").is_file()
    if manifest["source"] == "timm":  # installed by the toolkit, then by the serving one
        assert "timm==" in (base / "model" / "code" / "requirements.txt").read_text()
    assert "epoch=2 " in log and "best_epoch=" in log


@pytest.fixture(scope="module")
def server(
    trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The unchanged model directory served by the inference toolkit and TorchServe."""
    base = tmp_path_factory.mktemp(f"serve-{re.sub(r'[^a-z0-9]+', '-', trained['model'])}")
    shutil.copytree(trained["base"] / "model", base / "model")
    request = trained_deploy_environment(trained)
    # The workers and threads are the ones deploy() sets for the instance (ml.m5.large).
    assert (request["SAGEMAKER_MODEL_SERVER_WORKERS"], request["OMP_NUM_THREADS"]) == ("1", "2")
    port = free_port()
    env = {
        **os.environ,
        **request,
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "TEMP": str(base / "tmp"),
        "LOG_LOCATION": str(base / "logs"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    (base / "tmp").mkdir()
    (base / "logs").mkdir()
    code = (
        "import sagemaker_pytorch_serving_container.torchserve as ts\n"
        f"ts.TS_CONFIG_FILE = {str(base / 'ts.properties')!r}\n"
        "from sagemaker_pytorch_serving_container.serving import main\nmain()\n"
    )
    out = (base / "server.log").open("w")
    # The toolkit writes its model store and logs under the working directory.
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=out,
        cwd=base,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.perf_counter()
    url = f"http://127.0.0.1:{port}"
    try:
        first = wait_for_answer(url, process, base / "server.log")
        print(
            f"toolkit serving {trained['model']}: first answer after "
            f"{time.perf_counter() - started:.1f} s"
        )
        yield {"url": url, "model_dir": base / "model", "first": first}
    finally:
        stop_group(process)
        out.close()


def trained_deploy_environment(trained: dict[str, Any]) -> dict[str, str]:
    """The container environment the backend's CreateModel request sets."""
    session = smi.SageMakerSession("sagemaker-toolkits", role=ROLE, region="us-east-1")
    spec = smi.DeploySpec(
        "toolkit-endpoint",
        "s3://sagemaker-toolkits/jobs/x/output/model.tar.gz",
        role=ROLE,
        image_uri=IMAGE,
    )
    requests = session.backend.deploy_requests(spec)
    return dict(requests["CreateModel"]["PrimaryContainer"]["Environment"])


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and the Java process it started: its own process group, no other."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
            time.sleep(1)  # TorchServe's JVM exits after the Python frontend
        except subprocess.TimeoutExpired:
            continue


def post(
    url: str, body: bytes, content_type: str, accept: str = "application/json"
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": accept},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for_answer(url: str, process: subprocess.Popen[bytes], log: Path) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image, "PNG")
    deadline, last = time.monotonic() + 180, b"(no answer)"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the model server exited: {log.read_text()[-3000:]}")
        try:
            status, last = post(url, image.getvalue(), "image/png")
            if status == 200:
                return last
        except (ConnectionError, urllib.error.URLError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"/invocations did not answer 200 in 180 s; last answer: {last[:2000]!r}")


def in_process(model_dir: Path, body: bytes, content_type: str) -> dict[str, Any]:
    loaded = model_fn(str(model_dir))
    return dict(json.loads(output_fn(predict_fn(input_fn(body, content_type, loaded), loaded))))


def payloads(images: Path) -> dict[str, tuple[bytes, str]]:
    png = next((images / "7").glob("*.png")).read_bytes()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(jpeg, "JPEG", quality=95)
    array = io.BytesIO()
    np.save(array, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    instances = json.dumps(
        {
            "instances": [
                {"b64": base64.b64encode(png).decode()},
                {"b64": base64.b64encode(jpeg.getvalue()).decode()},
            ],
            "top_k": 3,
        }
    ).encode()
    return {
        "png": (png, "image/png"),
        "jpeg": (jpeg.getvalue(), "image/jpeg"),
        "npy": (array.getvalue(), "application/x-npy"),
        "json": (instances, "application/json"),
    }


def test_inference_toolkit_answers_like_the_model(
    server: dict[str, Any], aws: dict[str, Any]
) -> None:
    for kind, (body, content_type) in payloads(aws["images"]).items():
        status, answer = post(server["url"], body, content_type)
        assert status == 200, (kind, answer[:500])
        served = json.loads(answer)
        expected = in_process(server["model_dir"], body, content_type)
        assert len(served["predictions"]) == len(expected["predictions"]), kind
        for got, want in zip(served["predictions"], expected["predictions"], strict=True):
            assert [p["label"] for p in got["top_k"]] == [p["label"] for p in want["top_k"]]
            assert np.allclose(
                [p["probability"] for p in got["top_k"]],
                [p["probability"] for p in want["top_k"]],
                atol=1e-4,
            ), kind


def test_inference_toolkit_npy_answer(server: dict[str, Any], aws: dict[str, Any]) -> None:
    body, content_type = payloads(aws["images"])["png"]
    status, answer = post(server["url"], body, content_type, accept="application/x-npy")
    assert status == 200
    probabilities = np.load(io.BytesIO(answer))
    assert probabilities.shape == (1, 10) and abs(float(probabilities.sum()) - 1) < 1e-4


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not an image at all", "image/png", 400),
        (b"", "image/jpeg", 400),
        (b"hello", "text/plain", 415),
        (b'{"instances": "nope"}', "application/json", 400),
        (b"{broken json", "application/json", 400),
    ],
)
def test_inference_toolkit_refuses_bad_payloads(
    server: dict[str, Any], body: bytes, content_type: str, status: int
) -> None:
    got, answer = post(server["url"], body, content_type)
    assert got == status, answer[:500]
    assert post(server["url"], *payloads_png())[0] == 200  # still serving


def payloads_png() -> tuple[bytes, str]:
    image = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 90, 200)).save(image, "PNG")
    return image.getvalue(), "image/png"


def test_torchrun_two_processes(aws: dict[str, Any], tmp_path: Path) -> None:
    job = submitted_job(aws, "resnet18", "toolkit-torchrun")
    assert job["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    # A host with two GPUs gets two processes; on CPU the count is given explicitly.
    container_dirs(aws, job, tmp_path, {"sagemaker_mpi_num_of_processes_per_host": "2"})
    done = run_training(tmp_path, "toolkit-torchrun")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "torch.distributed.run" in log or "torchrun" in log
    assert "distributed: rank 0 of 2 (gloo)" in log and "distributed: rank 1 of 2 (gloo)" in log
    # The host's two processes decoded the images once between them, not once each.
    assert log.count("here, shared by 2)") >= 4, log[-4000:]  # train and valid, both ranks
    assert log.count("model package written") == 1  # rank 0 writes it
    assert (tmp_path / "output" / "success").exists()
    assert (
        json.loads((tmp_path / "model" / "manifest.json").read_text())["architecture"] == "resnet18"
    )


def test_images_that_cannot_fit_fail_fast_under_the_toolkit(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    job = submitted_job(aws, "resnet18", "toolkit-too-big")
    container_dirs(aws, job, tmp_path, {"image_size": "512"})
    manifest = tmp_path / "input" / "data" / "train" / "manifest.json"
    manifest.write_text(manifest_text(1_000_000))  # files the channel never got
    done = run_training(tmp_path, "toolkit-too-big")
    assert done.returncode != 0
    failure = (tmp_path / "output" / "failure").read_text()
    assert "The decoded images need 643.73 GiB" in failure and "image_size" in failure
    assert "Cannot decode" not in failure


def test_sigterm_to_the_process_group_packages_the_best_epoch(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    # SageMaker stops a job with SIGTERM; the toolkit's own process may die of it at once.
    job = submitted_job(aws, "resnet18", "toolkit-sigterm", epochs=10_000)
    container_dirs(aws, job, tmp_path)
    log_path = tmp_path / "toolkit.log"
    with log_path.open("w") as log_file:  # a file, not a pipe: an orphan may outlive the toolkit
        toolkit = subprocess.Popen(
            [str(BIN / "train")],
            env=toolkit_env(tmp_path, "toolkit-sigterm"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        group = os.getpgid(toolkit.pid)
        try:
            while "epoch=1 " not in log_path.read_text():  # an epoch to package
                assert toolkit.poll() is None, log_path.read_text()[-4000:]
                time.sleep(0.5)
            os.killpg(group, signal.SIGTERM)
            toolkit.wait(timeout=600)
            while group_alive(group):  # the job program itself, if the toolkit died first
                time.sleep(0.5)
        finally:
            if group_alive(group):
                os.killpg(group, signal.SIGKILL)
    # The toolkit, which read the job's output, may have died first: the package tells.
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["metrics"]["best_epoch"] >= 1, log_path.read_text()[-4000:]


def group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (a zombie no one reaps does not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while being read
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def test_a_search_in_one_job_runs_under_the_toolkit(aws: dict[str, Any], tmp_path: Path) -> None:
    est = smi.TransferLearningEstimator(
        "efficientnet_lite0",
        session=aws["session"],
        hyperparameters={"image_size": 32, "epochs": 2, "batch_size": 16, "augmentation": "none"},
        compute=smi.Compute(image_uri=IMAGE),
    )
    run = smi.TuningRun(
        est, {"lr": smi.Continuous(1e-3, 1e-1, scale="log")}, max_jobs=3, in_one_job=True
    )
    run.run(aws["channels"], name="toolkit-search", wait=False)
    client = aws["boto"].client("sagemaker", endpoint_url=aws["url"])
    job = dict(client.describe_training_job(TrainingJobName="toolkit-search"))
    container_dirs(aws, job, tmp_path)
    done = run_training(tmp_path, "toolkit-search")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert log.count("trial {") == 3 and "search: best trial" in log  # the argument arrived
    assert "features: backbone run once" in log
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["architecture"] == "efficientnet_lite0"
    assert "optuna==" in (tmp_path / "code" / "requirements.txt").read_text()


def test_trials_read_a_features_jobs_output_under_the_toolkit(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    est = smi.TransferLearningEstimator(
        "efficientnet_lite0",
        session=aws["session"],
        hyperparameters={"image_size": 32, "epochs": 2, "batch_size": 16, "augmentation": "none"},
        compute=smi.Compute(image_uri=IMAGE),
    )
    run = smi.TuningRun(
        est, {"lr": smi.Continuous(1e-3, 1e-1, scale="log")}, max_jobs=3, in_one_job=False
    )
    run.run(aws["channels"], name="toolkit-shared", wait=False, logs=False)
    client = aws["boto"].client("sagemaker", endpoint_url=aws["url"])
    features = dict(client.describe_training_job(TrainingJobName="toolkit-shared-features"))
    container_dirs(aws, features, tmp_path / "features")
    done = run_training(tmp_path / "features", "toolkit-shared-features")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "features: backbone run once" in done.stdout
    # What SageMaker does for the job: copy its checkpoint folder to CheckpointConfig.S3Uri.
    bucket, _, prefix = features["CheckpointConfig"]["S3Uri"][5:].partition("/")
    s3 = aws["boto"].client("s3", endpoint_url=aws["url"])
    stored = list((tmp_path / "features" / "checkpoints" / "features").iterdir())
    for path in stored:
        s3.upload_file(str(path), bucket, f"{prefix}/features/{path.name}")
    definition = client.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="toolkit-shared"
    )["TrainingJobDefinition"]
    trial = {
        "HyperParameters": {**definition["StaticHyperParameters"], "lr": "0.01"},
        "InputDataConfig": definition["InputDataConfig"],
    }
    container_dirs(aws, trial, tmp_path / "trial")
    done = run_training(tmp_path / "trial", "toolkit-shared-001")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "from the shared store" in log and "backbone run once" not in log
    manifest = json.loads((tmp_path / "trial" / "model" / "manifest.json").read_text())
    assert manifest["hyperparameters"]["lr"] == 0.01


def test_a_sharded_training_split_streams_under_the_toolkit(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    data = smi.ImageFolderDataset(aws["images"]).split(valid=0.25, seed=0)
    sharded = data.upload(aws["session"], "digits-shards", shards=True, shard_bytes=2**16)
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=aws["session"],
        weights=None,
        trainable="all",
        hyperparameters={"image_size": 32, "epochs": 2, "batch_size": 16, "augmentation": "light"},
        compute=smi.Compute(image_uri=IMAGE),
    )
    est.fit(sharded, wait=False, name="toolkit-shards")
    client = aws["boto"].client("sagemaker", endpoint_url=aws["url"])
    job = dict(client.describe_training_job(TrainingJobName="toolkit-shards"))
    modes = {c["ChannelName"]: c["InputMode"] for c in job["InputDataConfig"]}
    assert modes["train"] == "FastFile"  # FastFile shows the objects as these same files
    container_dirs(aws, job, tmp_path)
    done = run_training(tmp_path, "toolkit-shards")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "streamed each epoch and decoded by" in log and "epoch=2 " in log
    assert (tmp_path / "model" / "model.pth").is_file()
