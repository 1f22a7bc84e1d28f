"""What a job needs besides its data on SageMaker: the user's source_dir and the weights file."""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import sm_imgclf as smi
from helpers.backbones import write_source_dir
from sm_imgclf.backends.sagemaker.training import source_key, source_tarball

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    return smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)


@pytest.fixture
def source_dir(tmp_path: Path) -> Iterator[Path]:
    folder = write_source_dir(tmp_path / "src", requirements="# ours\nrich>=13\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    yield folder
    for name in [m for m in sys.modules if m.startswith("teamnets")]:
        del sys.modules[name]


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()
            for m in tar.getmembers()  # type: ignore[union-attr]
            if m.isfile()
        }


def test_source_dir_ships_at_the_top_with_merged_requirements(source_dir: Path) -> None:
    data = source_tarball(str(source_dir), ("timm==1.0.0",))
    files = members(data)
    assert "teamnets/tiny.py" in files and "train.py" in files
    assert "sm_imgclf/runtime/job/main.py" in files and ".git/HEAD" not in files
    assert files["requirements.txt"].decode().splitlines() == ["timm==1.0.0", "rich>=13"]
    assert data == source_tarball(str(source_dir), ("timm==1.0.0",))  # reproducible
    assert source_key(data) != source_key(source_tarball())


def test_source_dir_may_not_replace_the_library(tmp_path: Path) -> None:
    (tmp_path / "sm_imgclf").mkdir()
    (tmp_path / "sm_imgclf" / "errors.py").write_text("")
    with pytest.raises(smi.ConfigurationError, match="would replace the library's own file"):
        source_tarball(str(tmp_path))


def test_custom_model_job_uploads_its_source_dir(  # type: ignore[no-untyped-def]
    sm_session: smi.SageMakerSession, source_dir: Path, boto_session, moto_url: str
) -> None:
    estimator = smi.TransferLearningEstimator(
        "teamnets.tiny:tiny",
        session=sm_session,
        weights=None,
        source_dir=source_dir,
        compute=smi.Compute(image_uri=IMAGE),
    )
    request = estimator.dry_run(CHANNELS, name="team-1")
    assert request["HyperParameters"]["model"] == "teamnets.tiny:tiny"
    estimator.fit(CHANNELS, wait=False, name="team-1")
    key = request["HyperParameters"]["sagemaker_submit_directory"].split("/", 3)[3]
    assert "teamnets/tiny.py" in members(sm_session.store.get_bytes(key))


def test_s3_weights_arrive_as_their_own_channel(sm_session: smi.SageMakerSession) -> None:
    uri = "s3://models-bucket/pretrained/resnet50-11ad3fa6.pth"
    request = smi.TransferLearningEstimator(
        "resnet50", session=sm_session, weights=uri, compute=smi.Compute(image_uri=IMAGE)
    ).dry_run(CHANNELS)
    channel = request["InputDataConfig"][-1]
    assert channel["ChannelName"] == "weights"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == uri  # the key itself, no slash
    assert request["HyperParameters"]["weights"] == uri


def test_local_weights_are_uploaded_by_content(  # type: ignore[no-untyped-def]
    sm_session: smi.SageMakerSession, bucket: str, tmp_path: Path
) -> None:
    path = tmp_path / "mine.pth"
    torch.save({"w": torch.arange(4)}, path)
    estimator = smi.TransferLearningEstimator(
        "resnet18", session=sm_session, weights=str(path), compute=smi.Compute(image_uri=IMAGE)
    )
    request = estimator.dry_run(CHANNELS)
    uri = request["HyperParameters"]["weights"]
    assert uri.startswith(f"s3://{bucket}/sm-imgclf/weights/") and uri.endswith("/mine.pth")
    assert request["InputDataConfig"][-1]["DataSource"]["S3DataSource"]["S3Uri"] == uri
    assert not sm_session.store.list_objects("sm-imgclf/weights/")  # a dry run sends nothing
    estimator.fit(CHANNELS, wait=False, name="mine-1")
    assert sm_session.store.get_bytes(uri.split("/", 3)[3]) == path.read_bytes()


def test_tuning_trials_get_the_weights_channel(sm_session: smi.SageMakerSession) -> None:
    uri = "s3://models-bucket/pretrained/r18.pth"
    estimator = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        weights=uri,
        hyperparameters={"augmentation": "light"},  # trials as training jobs
        compute=smi.Compute(image_uri=IMAGE),
    )
    run = smi.TuningRun(
        estimator, {"lr": smi.Continuous(1e-4, 1e-2, scale="log")}, max_jobs=2, max_parallel_jobs=1
    )
    request = run.dry_run(CHANNELS)
    definition = request["TrainingJobDefinition"]
    assert [c["ChannelName"] for c in definition["InputDataConfig"]][-1] == "weights"
    assert definition["StaticHyperParameters"]["weights"] == uri
