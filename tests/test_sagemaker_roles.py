"""A session given no role finds its notebook's, its Studio user's or its caller's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.stub import Stubber

import sm_imgclf as smi
from sm_imgclf.backends.sagemaker import roles

ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-1"
CHANNELS = {"train": "s3://sagemaker-b/data/train"}
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"


@pytest.fixture
def metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "resource-metadata.json"
    monkeypatch.setattr(roles, "METADATA_FILE", path)
    return path


@pytest.fixture
def session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url, "sts": moto_url, "iam": moto_url}
    return smi.SageMakerSession(bucket, boto_session=boto_session, endpoint_urls=urls)


def role_of(session: smi.SageMakerSession) -> str:
    est = smi.TransferLearningEstimator(
        "resnet50", session=session, compute=smi.Compute(image_uri=IMAGE)
    )
    return str(est.dry_run(CHANNELS)["RoleArn"])


def test_a_notebook_instance(
    session: smi.SageMakerSession, metadata: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metadata.write_text(json.dumps({"ResourceName": "course-nb", "ResourceArn": "arn:x"}))
    with Stubber(session.backend.aws.sagemaker_client) as stub:
        stub.add_response(
            "describe_notebook_instance",
            {"NotebookInstanceName": "course-nb", "RoleArn": ROLE},
            {"NotebookInstanceName": "course-nb"},
        )
        assert role_of(session) == ROLE
        assert role_of(session) == ROLE  # looked up once
        stub.assert_no_pending_responses()
    assert f"role: {ROLE}, from notebook instance 'course-nb'" in capsys.readouterr().out


def test_a_studio_user_profile_and_the_domain_default(
    session: smi.SageMakerSession, metadata: Path
) -> None:
    metadata.write_text(json.dumps({"DomainId": "d-abc", "SpaceName": "my-space"}))
    with Stubber(session.backend.aws.sagemaker_client) as stub:
        stub.add_response(
            "describe_space",
            {
                "DomainId": "d-abc",
                "SpaceName": "my-space",
                "OwnershipSettings": {"OwnerUserProfileName": "ana"},
            },
            {"DomainId": "d-abc", "SpaceName": "my-space"},
        )
        stub.add_response(
            "describe_user_profile",
            {"DomainId": "d-abc", "UserProfileName": "ana", "UserSettings": {}},
            {"DomainId": "d-abc", "UserProfileName": "ana"},
        )
        # The profile sets no role of its own: the domain's default is the one.
        stub.add_response(
            "describe_domain",
            {"DomainId": "d-abc", "DefaultUserSettings": {"ExecutionRole": ROLE}},
            {"DomainId": "d-abc"},
        )
        found = roles.from_metadata(session.backend.aws.sagemaker_client)
        stub.add_response(
            "describe_user_profile",
            {
                "DomainId": "d-abc",
                "UserProfileName": "ana",
                "UserSettings": {"ExecutionRole": ROLE + "-ana"},
            },
            {"DomainId": "d-abc", "UserProfileName": "ana"},
        )
        metadata.write_text(json.dumps({"DomainId": "d-abc", "UserProfileName": "ana"}))
        own = roles.from_metadata(session.backend.aws.sagemaker_client)
        stub.assert_no_pending_responses()
    assert found == roles.FoundRole(ROLE, "the default role of Studio domain d-abc")
    assert own is not None and own.arn == ROLE + "-ana" and "user profile 'ana'" in own.source


def test_an_assumed_role_caller(session: smi.SageMakerSession, metadata: Path) -> None:
    aws = session.backend.aws
    sts, iam = aws.client("sts"), aws.client("iam")
    caller = "arn:aws:sts::123456789012:assumed-role/AmazonSageMaker-ExecutionRole-1/botocore"
    with Stubber(sts) as sts_stub, Stubber(iam) as iam_stub:
        sts_stub.add_response(
            "get_caller_identity",
            {"UserId": "AROA:botocore", "Account": "123456789012", "Arn": caller},
        )
        iam_stub.add_response(
            "get_role",
            {
                "Role": {
                    "Path": "/service-role/",
                    "RoleName": "AmazonSageMaker-ExecutionRole-1",
                    "RoleId": "AROAEXAMPLEEXAMPLE01",
                    "Arn": ROLE,
                    "CreateDate": 0,
                }
            },
            {"RoleName": "AmazonSageMaker-ExecutionRole-1"},
        )
        sts_stub.add_response(
            "get_caller_identity",
            {"UserId": "AROA:b", "Account": "123456789012", "Arn": caller},
        )
        iam_stub.add_client_error("get_role", "AccessDenied", "not allowed")
        with_path = roles.from_caller(sts, iam)
        without = roles.from_caller(sts, iam)
    assert with_path is not None and with_path.arn == ROLE  # its path comes from IAM
    assert without is not None and without.arn == (
        "arn:aws:iam::123456789012:role/AmazonSageMaker-ExecutionRole-1"
    )


def test_outside_them_the_error_says_what_to_pass(
    session: smi.SageMakerSession, metadata: Path
) -> None:
    # moto's caller is an IAM user, not an assumed role; there is no metadata file.
    with pytest.raises(smi.ConfigurationError, match="needs an IAM role") as caught:
        role_of(session)
    message = str(caught.value)
    assert str(metadata) in message and "role='arn:aws:iam::<account>:role/<name>'" in message
