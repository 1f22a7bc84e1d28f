"""A SageMaker job whose decoded images cannot fit its instance is refused before it exists."""

from __future__ import annotations

import pytest

import sm_imgclf as smi
from helpers.images import manifest_text
from sm_imgclf.backends.sagemaker.instances import room

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    return smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)


def estimator(session: smi.Session, instance_type: str) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={"epochs": 1},
        compute=smi.Compute(instance_type=instance_type),
    )


def jobs(session: smi.SageMakerSession) -> list[str]:
    listed = session.backend.aws.sagemaker_client.list_training_jobs()["TrainingJobSummaries"]
    return [job["TrainingJobName"] for job in listed]


def test_the_instance_table_knows_memory_and_local_disk() -> None:
    assert room("ml.g4dn.xlarge") == (16, 125) and room("ml.p3.2xlarge") == (61, 0)
    assert room("ml.m5.large") == (8.0, 0) and room("ml.c5.xlarge") == (8.0, 0)
    assert room("ml.t3.medium") == (4.0, 0) and room("ml.r5.2xlarge") == (64.0, 0)
    assert room("ml.x9.huge") is None


def test_images_that_fit_nowhere_on_the_instance_are_refused_before_the_job(
    sm_session: smi.SageMakerSession, bucket: str
) -> None:
    sm_session.store.put_bytes("big/train/manifest.json", manifest_text(700_000).encode())
    with pytest.raises(smi.DatasetError) as refused:
        estimator(sm_session, "ml.g4dn.xlarge").fit(
            {"train": f"s3://{bucket}/big/train"}, name="too-big"
        )
    message = str(refused.value)
    # 700,000 x 3 x 256 x 256 (224 px with the training crop margin)
    assert "need 128.17 GiB (700,000 train images at 3x256x256" in message
    assert "ml.g4dn.xlarge has 16.00 GiB" in message and "free at /opt/ml/input/data" in message
    assert "too-big" not in jobs(sm_session)  # moto's server is shared by the whole suite


def test_images_past_memory_but_within_disk_start_with_a_note(
    sm_session: smi.SageMakerSession, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sm_session.store.put_bytes("mid/train/manifest.json", manifest_text(60_000).encode())
    estimator(sm_session, "ml.m5.large").fit(
        {"train": f"s3://{bucket}/mid/train"}, wait=False, name="spills"
    )
    assert "exceed ml.m5.large's memory, so the job will map them" in capsys.readouterr().out
    assert "spills" in jobs(sm_session)


def test_a_training_split_in_shards_streams_through_fast_file_whatever_its_size(
    sm_session: smi.SageMakerSession, bucket: str
) -> None:
    text = manifest_text(700_000, shards=500)  # refused above when it is 700,000 objects
    sm_session.store.put_bytes("sharded/train/manifest.json", text.encode())
    sm_session.store.put_bytes("sharded/valid/manifest.json", manifest_text(10).encode())
    channels = {"train": f"s3://{bucket}/sharded/train", "valid": f"s3://{bucket}/sharded/valid"}
    estimator(sm_session, "ml.g4dn.xlarge").fit(channels, wait=False, name="streams")
    client = sm_session.backend.aws.sagemaker_client
    described = client.describe_training_job(TrainingJobName="streams")
    modes = {c["ChannelName"]: c["InputMode"] for c in described["InputDataConfig"]}
    assert modes == {"train": "FastFile", "valid": "File"}
