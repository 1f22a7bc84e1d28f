"""One suite, every backend: each implements the Backend protocol and behaves the same."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import sm_imgclf as smi
from helpers.images import make_dataset
from sm_imgclf.contracts.backend import Backend
from sm_imgclf.contracts.status import JobState, JobStatus

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311"
BACKENDS = ["local", "fake", "sagemaker"]


@pytest.fixture(params=BACKENDS)
def session(request: pytest.FixtureRequest, tmp_path: Path) -> smi.Session:
    if request.param == "local":
        return smi.LocalSession(tmp_path / "session")
    if request.param == "fake":
        return smi.Session(smi.FakeBackend())
    moto_url = request.getfixturevalue("moto_url")
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    return smi.SageMakerSession(
        request.getfixturevalue("bucket"),
        role=ROLE,
        endpoint_urls=urls,
        boto_session=request.getfixturevalue("boto_session"),
    )


def channels(session: smi.Session, tmp_path: Path) -> dict[str, str]:
    """Channels the backend can read: uploaded to its own store."""
    root = make_dataset(tmp_path / "data", counts={"train": 3, "valid": 2})
    return dict(smi.ImageFolderDataset(root).upload(session, "contract", progress=False))


def wait_for(check: Callable[[], bool], what: str, limit: float = 300.0) -> None:
    """Poll until ``check()`` holds; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


def test_each_backend_implements_the_protocol(session: smi.Session) -> None:
    backend = session.backend
    assert isinstance(backend, Backend)
    for name, member in inspect.getmembers(Backend, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = inspect.signature(getattr(backend, name)).parameters
        theirs = list(inspect.signature(member).parameters)[1:]  # without self
        required = [p for p, v in ours.items() if v.default is inspect.Parameter.empty]
        assert list(ours)[: len(theirs)] == theirs, f"{backend.name}.{name} parameters"
        assert set(required) <= set(theirs), f"{backend.name}.{name} needs more than the protocol"


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.describe_training("no-such-job"),
        lambda b: b.stop_training("no-such-job"),
        lambda b: b.describe_tuning("no-such-run"),
        lambda b: b.list_trials("no-such-run"),
        lambda b: b.stop_tuning("no-such-run"),
        lambda b: b.describe_endpoint("no-such-endpoint"),
    ],
    ids=[
        "describe_training",
        "stop_training",
        "describe_tuning",
        "list_trials",
        "stop_tuning",
        "describe_endpoint",
    ],
)
def test_unknown_names_are_a_backend_error(
    session: smi.Session, call: Callable[[Backend], object]
) -> None:
    with pytest.raises(smi.BackendError):
        call(session.backend)


def test_deleting_an_unknown_endpoint_does_nothing(session: smi.Session) -> None:
    session.backend.delete_endpoint("no-such-endpoint")
    assert all(e["name"] != "no-such-endpoint" for e in session.backend.list_endpoints())


@pytest.mark.slow
def test_start_describe_list_and_stop(session: smi.Session, tmp_path: Path) -> None:
    backend = session.backend
    estimator = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={
            "image_size": 16,
            "epochs": 50,
            "batch_size": 4,
            "augmentation": "none",
            "record_every": 0,
        },
        compute=smi.Compute(image_uri=IMAGE, instance_type="ml.m5.large"),
    )
    spec = estimator.plan(channels(session, tmp_path), name="contract-1")
    backend.start_training(spec)
    status = backend.describe_training("contract-1")
    assert isinstance(status, JobStatus) and isinstance(status.status, JobState)
    assert status.status in (JobState.IN_PROGRESS, JobState.COMPLETED)
    assert {"name": "contract-1", "status": status.status} in [
        {"name": j["name"], "status": JobState(j["status"])} for j in backend.list_jobs()
    ]
    backend.stop_training("contract-1")
    wait_for(lambda: backend.describe_training("contract-1").status.terminal, "the job to end")
    ended = backend.describe_training("contract-1").status
    assert ended in (JobState.STOPPED, JobState.COMPLETED)  # a job may finish before the stop
    backend.stop_training("contract-1")  # stopping an ended job changes nothing
    assert backend.describe_training("contract-1").status is ended
