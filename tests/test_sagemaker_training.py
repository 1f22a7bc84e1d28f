"""SageMaker training: requests botocore validates, moto over HTTP, and Stubber for status."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
from botocore.stub import Stubber

import sm_imgclf as smi
from sm_imgclf.backends.sagemaker.training import source_key, source_tarball

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    return smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)


def estimator(session: smi.Session, **options: object) -> smi.TransferLearningEstimator:
    options.setdefault("compute", smi.Compute(image_uri=IMAGE))
    return smi.TransferLearningEstimator(
        "resnet50",
        session=session,
        hyperparameters={"lr": 0.01, "batch_size": 64, "epochs": 3},
        **options,
    )  # type: ignore[arg-type]


def test_dry_run_is_the_validated_request(sm_session: smi.SageMakerSession, bucket: str) -> None:
    request = estimator(
        sm_session,
        tags={"team": "vision"},
        compute=smi.Compute(use_spot=True, instance_count=2, image_uri=IMAGE),
    ).dry_run(CHANNELS, name="dogs-1")
    hp = request["HyperParameters"]
    assert hp["batch_size"] == "64" and hp["lr"] == "0.01" and hp["model"] == "resnet50"
    assert hp["sagemaker_program"] == "train.py" and hp["sagemaker_region"] == "us-east-1"
    assert hp["sagemaker_submit_directory"].startswith(f"s3://{bucket}/sm-imgclf/source/")
    assert request["RoleArn"] == ROLE and request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 86400,
        "MaxWaitTimeInSeconds": 172800,
    }
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{bucket}/jobs/dogs-1/checkpoints"
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "valid"]
    # A prefix without its slash would also read train_old/ and training/.
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]] == [
        "s3://b/data/train/",
        "s3://b/data/valid/",
    ]
    names = [d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "valid:accuracy" in names and request["Tags"] == [
        {"Key": "team", "Value": "vision"},
        {"Key": "sm-imgclf:created-by", "Value": "sm-imgclf"},
        {"Key": "sm-imgclf:version", "Value": smi.__version__},
        {"Key": "sm-imgclf:session", "Value": sm_session.backend.aws.session_id},
    ]


def test_fit_uploads_the_source_and_creates_the_job(  # type: ignore[no-untyped-def]
    sm_session: smi.SageMakerSession, bucket: str, boto_session, moto_url: str
) -> None:
    job = estimator(sm_session).fit(CHANNELS, wait=False, name="dogs-2")
    source = source_tarball()
    assert sm_session.store.get_bytes(source_key(source)) == source
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    described = client.describe_training_job(TrainingJobName="dogs-2")
    assert described["HyperParameters"]["epochs"] == "3"
    assert described["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job.name == "dogs-2" and job.status in {"InProgress", "Completed"}


def test_source_tarball_is_reproducible_and_holds_the_job() -> None:
    first, second = source_tarball(), source_tarball()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = set(tar.getnames())
    assert {
        "train.py",
        "sm_imgclf/runtime/job/main.py",
        "sm_imgclf/runtime/serving/handler.py",
    } <= names


def test_job_half_imports_no_boto3_or_sagemaker() -> None:
    code = (
        "import sys, sm_imgclf.runtime.job.main, sm_imgclf.runtime.job.setup, "
        "sm_imgclf.runtime.job.data, sm_imgclf.runtime.job.loop, "
        "sm_imgclf.runtime.serving.handler\n"
        "print([m for m in ('boto3', 'botocore', 'sagemaker') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_role(moto_url: str, bucket: str, boto_session) -> None:  # type: ignore[no-untyped-def]
    urls = {"sagemaker": moto_url, "sts": moto_url}  # moto's caller is a user, not a role
    session = smi.SageMakerSession(bucket, boto_session=boto_session, endpoint_urls=urls)
    with pytest.raises(smi.ConfigurationError, match="needs an IAM role"):
        estimator(session).dry_run(CHANNELS)


def test_image_lookup_needs_no_sdk(
    sm_session: smi.SageMakerSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sagemaker", None)  # importing it now fails
    request = smi.TransferLearningEstimator("resnet50", session=sm_session).dry_run(CHANNELS)
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch:2.13-cu133-amzn2023-sagemaker"
    )
    cpu = smi.TransferLearningEstimator(
        "resnet50", session=sm_session, compute=smi.Compute(instance_type="ml.m5.xlarge")
    ).dry_run(CHANNELS)
    assert cpu["AlgorithmSpecification"]["TrainingImage"].endswith(":2.13-cpu-amzn2023-sagemaker")
    # torchrun launching, which AWS supports on GPU instances only.
    assert request["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert cpu["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "false"
    # A warm start needs its parents' hyperparameter count, whichever processor they ran on.
    assert set(cpu["HyperParameters"]) == set(request["HyperParameters"])


@pytest.mark.parametrize(("lr", "adopted"), [(0.01, True), (0.5, False)])
def test_a_create_that_meets_its_own_job_carries_on(
    sm_session: smi.SageMakerSession, lr: float, adopted: bool
) -> None:
    # The answer to CreateTrainingJob was lost and the retry found the job there.
    request = estimator(sm_session).dry_run(CHANNELS, name="dogs-3")
    found = {
        **request,
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/dogs-3",
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Starting",
        "CreationTime": 0,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m"},
    }
    for drop in ("Tags", "EnableManagedSpotTraining", "CheckpointConfig"):
        found.pop(drop, None)
    # The service echoes its defaults for what the request left out.
    found["InputDataConfig"] = [
        {"CompressionType": "None", "RecordWrapperType": "None", **channel}
        for channel in request["InputDataConfig"]
    ]
    found["OutputDataConfig"] = {"CompressionType": "GZIP", **request["OutputDataConfig"]}
    found["AlgorithmSpecification"] = {
        "EnableSageMakerMetricsTimeSeries": False,
        **request["AlgorithmSpecification"],
    }
    est = estimator(sm_session).with_hyperparameters({"lr": lr})
    with Stubber(sm_session.backend.aws.sagemaker_client) as stub:  # type: ignore[attr-defined]
        stub.add_client_error(
            "create_training_job",
            "ResourceInUse",
            "Training job names must be unique ... already exists",
        )
        stub.add_response("describe_training_job", found, {"TrainingJobName": "dogs-3"})
        if adopted:
            assert est.fit(CHANNELS, wait=False, name="dogs-3").name == "dogs-3"
        else:
            with pytest.raises(smi.BackendError, match="exists already with other settings"):
                est.fit(CHANNELS, wait=False, name="dogs-3")


def test_a_bucket_the_managed_policy_misses_is_warned_about_once(  # type: ignore[no-untyped-def]
    moto_url: str, boto_session
) -> None:
    boto_session.client("s3", endpoint_url=moto_url).create_bucket(Bucket="team-images")
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    session = smi.SageMakerSession(
        "team-images", role=ROLE, boto_session=boto_session, endpoint_urls=urls
    )
    with pytest.warns(UserWarning, match="AmazonSageMakerFullAccess") as caught:
        estimator(session).fit(CHANNELS, wait=False, name="team-1")
    [warning] = caught.list
    assert "s3:PutObject" in str(warning.message) and "arn:aws:s3:::team-images/*" in str(
        warning.message
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per bucket, not once per job
        estimator(session).fit(CHANNELS, wait=False, name="team-2")


def test_a_bucket_in_another_region_is_refused_before_any_job(  # type: ignore[no-untyped-def]
    moto_url: str, boto_session
) -> None:
    s3 = boto_session.client("s3", endpoint_url=moto_url)
    s3.create_bucket(
        Bucket="far-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url}
    session = smi.SageMakerSession(
        "far-bucket", role=ROLE, boto_session=boto_session, endpoint_urls=urls
    )
    with pytest.raises(smi.ConfigurationError, match=r"far-bucket \(in eu-west-1\)") as caught:
        estimator(session).fit(CHANNELS, wait=False, name="far-1")
    assert "region='eu-west-1'" in str(caught.value)
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    assert all(
        j["TrainingJobName"] != "far-1" for j in client.list_training_jobs()["TrainingJobSummaries"]
    )


def test_a_role_given_by_name_is_sent_as_its_arn(  # type: ignore[no-untyped-def]
    moto_url: str, bucket: str, boto_session
) -> None:
    iam = boto_session.client("iam", endpoint_url=moto_url)
    arn = iam.create_role(RoleName="SageMakerByName", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url, "iam": moto_url}
    session = smi.SageMakerSession(
        bucket, role="SageMakerByName", boto_session=boto_session, endpoint_urls=urls
    )
    assert estimator(session).dry_run(CHANNELS, name="by-name")["RoleArn"] == arn
    missing = smi.SageMakerSession(
        bucket, role="NoSuchRole", boto_session=boto_session, endpoint_urls=urls
    )
    with pytest.raises(smi.ConfigurationError, match="role must be an IAM role of this account"):
        estimator(missing).dry_run(CHANNELS, name="by-name")


def test_a_zero_quota_is_named_before_the_job_is_created(  # type: ignore[no-untyped-def]
    moto_url: str, bucket: str, boto_session
) -> None:
    urls = {"s3": moto_url, "sagemaker": moto_url, "logs": moto_url, "service-quotas": moto_url}
    session = smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)
    quota = {
        "ServiceCode": "sagemaker",
        "QuotaCode": "L-TEST1",
        "QuotaName": "ml.g4dn.xlarge for training job usage",
        "Value": 0.0,
    }
    with Stubber(session.backend.aws.quotas_client) as stub:  # type: ignore[attr-defined]
        stub.add_response("list_service_quotas", {"Quotas": [quota]}, {"ServiceCode": "sagemaker"})
        with pytest.raises(smi.ConfigurationError) as caught:
            estimator(session).fit(CHANNELS, wait=False, name="no-quota")
    assert "'ml.g4dn.xlarge for training job usage' (L-TEST1) is 0" in str(caught.value)
    assert "Service Quotas console" in str(caught.value)
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    assert all(
        j["TrainingJobName"] != "no-quota"
        for j in client.list_training_jobs()["TrainingJobSummaries"]
    )


def test_local_channels_are_refused(sm_session: smi.SageMakerSession, tmp_path: Path) -> None:
    with pytest.raises(smi.ConfigurationError, match="an s3:// URI"):
        estimator(sm_session).dry_run({"train": tmp_path.as_uri()})


def test_botocore_validation_catches_bad_values(sm_session: smi.SageMakerSession) -> None:
    short_account = "arn:aws:iam::123:role/SageMakerRole"  # an account id has 12 digits
    with pytest.raises(smi.ConfigurationError, match="CreateTrainingJob request is invalid"):
        estimator(sm_session, role=short_account).dry_run(CHANNELS)


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        ({"": "v"}, "keys of 1-128"),
        ({"aws:team": "v"}, "'aws:'"),
        ({"sm-imgclf:session": "mine"}, "the library sets those"),
        ({"team": "a\nb"}, "tags['team']"),
        ({f"k{i}": "v" for i in range(48)}, "at most 47 tags"),
    ],
)
def test_bad_tags_are_refused_before_any_request(
    sm_session: smi.SageMakerSession, tags: dict, named: str
) -> None:
    with pytest.raises(smi.ConfigurationError, match=re.escape(named)):
        estimator(sm_session, tags=tags)


def stub_job(
    session: smi.SageMakerSession,
    statuses: list[dict[str, object]],
    log: list[str],
    extra_pulls: int,
    real_pacing: bool = False,
) -> tuple[Stubber, Stubber]:
    backend = session.backend
    if not real_pacing:  # stubbed answers need no 5 s between looks
        backend.min_poll_seconds = 0.0  # type: ignore[misc]
    sagemaker = Stubber(backend.aws.sagemaker_client)  # type: ignore[attr-defined]
    logs = Stubber(backend.aws.logs_client)  # type: ignore[attr-defined]
    stream = "job-1/algo-1-1700000000"
    for status in statuses:
        sagemaker.add_response(
            "describe_training_job",
            {
                "TrainingJobName": "job-1",
                "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/job-1",
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/jobs/job-1/output/model.tar.gz"},
                "TrainingJobStatus": status["status"],
                "SecondaryStatus": "Training",
                "AlgorithmSpecification": {"TrainingInputMode": "File"},
                "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 30},
                "StoppingCondition": {},
                "CreationTime": 0,
                **({"FailureReason": status["reason"]} if "reason" in status else {}),
            },
            {"TrainingJobName": "job-1"},
        )
    for i in range(len(statuses) + extra_pulls):
        # Streams are listed until the one host has its stream, then after quiet pulls only.
        if i == 0 or i - 1 >= len(log):
            logs.add_response(
                "describe_log_streams",
                {"logStreams": [{"logStreamName": stream}]},
                {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "job-1/"},
            )
        expected = {
            "logGroupName": "/aws/sagemaker/TrainingJobs",
            "logStreamName": stream,
            "startFromHead": True,
        }
        if i:
            expected["nextToken"] = f"f/{i}"
        logs.add_response(
            "get_log_events",
            {
                "events": [
                    {"timestamp": 0, "message": line, "ingestionTime": 0}
                    for line in ([log[i]] if i < len(log) else [])
                ],
                "nextForwardToken": f"f/{i + 1}",
            },
            expected,
        )
    return sagemaker, logs


def test_status_progression_and_logs(sm_session: smi.SageMakerSession) -> None:
    lines = [
        "epoch=1 train:loss=0.9 train:accuracy=0.6 valid:loss=0.8 valid:accuracy=0.7",
        "epoch=2 train:loss=0.5 train:accuracy=0.8 valid:loss=0.6 valid:accuracy=0.85",
    ]
    sagemaker, logs = stub_job(
        sm_session,
        [{"status": "InProgress"}, {"status": "InProgress"}, {"status": "Completed"}],
        lines,
        extra_pulls=2,
    )
    out = io.StringIO()
    with sagemaker, logs:
        job = smi.TrainingJob("job-1", sm_session)
        status = job.wait(poll=0, out=out)
    assert status.status == "Completed"
    assert status.model_uri == "s3://b/jobs/job-1/output/model.tar.gz"
    assert out.getvalue().splitlines() == lines
    assert [m["valid:accuracy"] for m in job.metrics] == [0.7, 0.85]


def test_failure_reason_is_raised(sm_session: smi.SageMakerSession) -> None:
    reason = "AlgorithmError: ExecuteUserScriptError: CUDA out of memory"
    sagemaker, logs = stub_job(
        sm_session,
        [{"status": "InProgress"}, {"status": "Failed", "reason": reason}],
        [],
        extra_pulls=1,
    )
    with sagemaker, logs, pytest.raises(smi.TrainingJobFailedError, match="CUDA out of memory"):
        smi.TrainingJob("job-1", sm_session).wait(poll=0, out=io.StringIO())


class CtrlCOnFirstLine(io.StringIO):
    def write(self, text: str) -> int:
        if text.startswith("epoch=1 "):
            raise KeyboardInterrupt
        return super().write(text)


@pytest.mark.parametrize("stop", [None, True])
def test_ctrl_c_detaches_from_a_sagemaker_job_unless_asked_to_stop(
    sm_session: smi.SageMakerSession, stop: bool | None
) -> None:
    sagemaker, logs = stub_job(
        sm_session, [{"status": "InProgress"}], ["epoch=1 train:loss=1.0"], extra_pulls=0
    )
    if stop:
        sagemaker.add_response("stop_training_job", {}, {"TrainingJobName": "job-1"})
    out = CtrlCOnFirstLine()
    with sagemaker, logs, pytest.raises(KeyboardInterrupt):
        smi.TrainingJob("job-1", sm_session).wait(poll=0, out=out, stop_on_interrupt=stop)
    sagemaker.assert_no_pending_responses()  # StopTrainingJob only when asked for
    if stop:
        assert "stopping job-1" in out.getvalue()
    else:
        assert "job-1 keeps running (and billing)" in out.getvalue()
        assert "smi.TrainingJob.attach('job-1', session)" in out.getvalue()


def test_sagemaker_is_asked_every_5_s_at_most_and_less_while_nothing_changes(
    sm_session: smi.SageMakerSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf.training import job as job_module

    waits: list[float] = []
    monkeypatch.setattr(job_module.time, "sleep", waits.append)
    statuses = [{"status": "InProgress"}] * 5 + [{"status": "Completed"}]
    lines = ["epoch=1 train:loss=1.0"]  # news on the first look only
    sagemaker, logs = stub_job(sm_session, statuses, lines, extra_pulls=1, real_pacing=True)
    with sagemaker, logs:
        smi.TrainingJob("job-1", sm_session).wait(poll=1.0, out=io.StringIO())
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_fake_backend_scripts_outcomes() -> None:
    backend = smi.FakeBackend()
    session = smi.Session(backend)
    job = estimator(session).fit({"train": "memory://fake/t"}, wait=False, name="j")
    assert backend.jobs["j"].spec.hyperparameters.batch_size == 64
    backend.complete("j", ["epoch=1 train:loss=1.0 train:accuracy=0.5"])
    assert job.wait(out=io.StringIO()).status == "Completed"
    assert job.metrics == [{"epoch": 1, "train:loss": 1.0, "train:accuracy": 0.5}]
