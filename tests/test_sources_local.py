"""Every model source and weights location through the local backend, into a served package."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import sm_imgclf as smi
from helpers.backbones import write_source_dir
from helpers.images import make_dataset, write_image
from sm_imgclf._archive import safe_extract
from sm_imgclf.runtime.models import build_model

pytestmark = pytest.mark.slow
LABELS = {"cat", "dog", "bird"}
SMALL = {"image_size": 32, "epochs": 1, "batch_size": 8, "augmentation": "none", "record_every": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[smi.LocalSession, smi.Channels]:
    root = tmp_path_factory.mktemp("sources")
    session = smi.LocalSession(root / "session")
    dataset = smi.ImageFolderDataset(make_dataset(root / "images"))
    return session, dataset.upload(session, "images")


@pytest.fixture
def source_dir(tmp_path: Path) -> Iterator[Path]:
    yield write_source_dir(tmp_path / "team", requirements="rich>=13\n")
    for name in [m for m in sys.modules if m.startswith("teamnets")]:
        del sys.modules[name]


def package_of(job: smi.TrainingJob, target: Path) -> Path:
    assert job.status == "Completed", job.failure_reason
    return safe_extract(job.model_uri.removeprefix("file://"), target)


def predict_elsewhere(package: Path, image: Path) -> dict:
    """Load the package in a fresh interpreter that knows nothing of the user's folder."""
    code = (
        "import json, sys\n"
        "from sm_imgclf.runtime.serving.handler import model_fn, input_fn, predict_fn, "
        "output_fn\n"
        "m = model_fn(sys.argv[1])\n"
        "body = open(sys.argv[2], 'rb').read()\n"
        "print(output_fn(predict_fn(input_fn(body, 'image/jpeg', m), m)).decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(package), str(image)],
        capture_output=True,
        text=True,
        cwd=package.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout)["predictions"][0]["top_k"][0])


def test_users_module_trains_packages_and_serves(
    data: tuple, source_dir: Path, tmp_path: Path
) -> None:
    session, channels = data
    job = smi.TransferLearningEstimator(
        "teamnets.tiny:tiny",
        session=session,
        weights=None,
        source_dir=source_dir,
        hyperparameters=SMALL,
    ).fit(channels, logs=False)
    package = package_of(job, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    assert (manifest["architecture"], manifest["source"]) == ("teamnets.tiny:tiny", "module")
    assert manifest["std"] == [0.25, 0.25, 0.25] and manifest["head"]["path"] == "out"
    assert (package / "code" / "teamnets" / "tiny.py").is_file()
    assert (package / "code" / "requirements.txt").read_text() == "rich>=13\n"
    image = write_image(tmp_path / "cat.jpg")
    assert predict_elsewhere(package, image)["label"] in LABELS
    with job.deploy("team-tiny") as endpoint:
        assert endpoint.predict([image])[0].label in LABELS


def test_timm_model_trains_and_serves(data: tuple, tmp_path: Path) -> None:
    session, channels = data
    job = smi.TransferLearningEstimator(
        "timm:resnet18", session=session, weights=None, hyperparameters=SMALL
    ).fit(channels, logs=False)
    package = package_of(job, tmp_path / "package")
    requirements = (package / "code" / "requirements.txt").read_text()
    assert requirements.startswith("timm==")
    image = write_image(tmp_path / "dog.jpg")
    assert predict_elsewhere(package, image)["label"] in LABELS
    with job.deploy("timm-resnet18") as endpoint:
        assert endpoint.predict([image])[0].label in LABELS


def test_frozen_weights_from_s3_and_from_a_file_reach_the_package(  # type: ignore[no-untyped-def]
    data: tuple,
    tmp_path: Path,
    moto_url: str,
    bucket: str,
    boto_session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session, channels = data
    pretrained = build_model("resnet18", 1000)[0].state_dict()
    path = tmp_path / "r18.pth"
    torch.save(pretrained, path)
    boto_session.client("s3", endpoint_url=moto_url).upload_file(str(path), bucket, "w/r18.pth")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)  # the local backend's own S3 client
    for weights in (f"s3://{bucket}/w/r18.pth", str(path)):
        job = smi.TransferLearningEstimator(
            "resnet18", session=session, weights=weights, hyperparameters=SMALL
        ).fit(channels, logs=False)
        package = package_of(job, tmp_path / job.name)
        state = torch.load(package / "model.pth", weights_only=True)
        assert torch.equal(state["layer3.0.conv1.weight"], pretrained["layer3.0.conv1.weight"])
        assert state["fc.weight"].shape == (3, 512)


def test_missing_s3_weights_fail_before_the_job_starts(  # type: ignore[no-untyped-def]
    data: tuple, moto_url: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, channels = data
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    estimator = smi.TransferLearningEstimator(
        "resnet18", session=session, weights=f"s3://{bucket}/w/none.pth", hyperparameters=SMALL
    )
    with pytest.raises(smi.StorageError, match=r"none\.pth"):
        estimator.fit(channels, logs=False, name="no-weights")
    assert not (session.root / "jobs" / "no-weights" / "status.json").exists()
