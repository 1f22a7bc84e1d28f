"""Faults: killed jobs, killed tuners, cut uploads and a throttling store; nothing lost."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

import sm_imgclf as smi
from helpers.figures import FIGURES, scale
from helpers.images import write_image
from helpers.s3proxy import S3Proxy

pytestmark = pytest.mark.reliability
HP = {
    "image_size": 16,
    "epochs": 4,
    "augmentation": "none",
    "batch_size": 32,
    "lr": 0.003,
    "record_every": 0,
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[smi.LocalSession, smi.Channels]:
    root = tmp_path_factory.mktemp("faults")
    smi.digits_to_folder(root / "images", limit_per_class=30)
    session = smi.LocalSession(root / "session")
    data = smi.ImageFolderDataset(root / "images").split(valid=0.25, seed=0)
    return session, data.upload(session, "digits", progress=False)


def estimator(session: smi.Session) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, trainable="all", hyperparameters=HP
    )


def wait_for(predicate: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def kill_group(folder: Path) -> None:
    os.killpg(int((folder / "runner.pid").read_text()), signal.SIGKILL)


def test_killed_training_resumes_to_the_same_result(digits: tuple) -> None:
    session, channels = digits
    baseline = estimator(session).fit(channels, logs=False, name="uninterrupted")
    at = random.Random().randint(1, 3)
    job = estimator(session).fit(channels, wait=False, name="killed")
    folder = session.backend.job_dir("killed")
    log = folder / "log.txt"
    wait_for(lambda: log.exists() and f"epoch={at} " in log.read_text())
    kill_group(folder)  # SIGKILL: no handler runs, as when a machine dies
    wait_for(lambda: job.status == "Failed")
    resumed = estimator(session).fit(channels, logs=False, name="killed")
    epochs = [m for m in resumed.metrics if m["epoch"] is not None]
    log = (folder / "log.txt").read_text()
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]
    resumed_at = re.search(r"resumed from checkpoint at epoch (\d+)", log)
    assert resumed_at and at <= int(resumed_at.group(1)) < 4, log[-2000:]
    best = max(m["valid:accuracy"] for m in epochs)
    reference = max(m["valid:accuracy"] for m in baseline.metrics if m["epoch"])
    FIGURES["killed training"] = {
        "killed_after_epoch": at,
        "resumed_from_epoch": int(resumed_at.group(1)),
        "epochs": len(epochs),
        "valid_acc": best,
        "uninterrupted_valid_acc": reference,
    }
    assert best >= reference - 0.05


def test_killed_tuner_repeats_no_finished_trial(digits: tuple) -> None:
    session, channels = digits
    space = {"lr": smi.Continuous(1e-3, 1e-1, scale="log")}
    run = smi.TuningRun(
        estimator(session), space, strategy="random", max_jobs=4, max_parallel_jobs=2
    )
    result = run.run(channels, name="killed-tuner", wait=False)
    wait_for(lambda: any(t.status == "completed" for t in result.refresh().trials))
    finished = {t.job_name for t in result.trials if t.status == "completed"}
    os.kill(
        int((session.backend.tuning_dir("killed-tuner") / "runner.pid").read_text()), signal.SIGKILL
    )  # the tuner only: its running trials go on by themselves
    wait_for(lambda: result.refresh().status == "Failed")
    final = run.run(channels, name="killed-tuner", logs=False)
    starts = {
        t.job_name: (session.backend.job_dir(t.job_name) / "log.txt").read_text().count("job: ")
        for t in final.trials
    }
    FIGURES["killed tuner"] = {
        "trials": len(final.trials),
        "finished_before_kill": len(finished),
        "repeated": sum(starts[n] > 1 for n in finished),
    }
    assert final.status == "Completed" and len(final.trials) == 4
    assert {t.status for t in final.trials} == {"completed"}
    assert all(starts[name] == 1 for name in finished)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_upload_killed_midway_completes_on_rerun(
    tmp_path: Path, moto_url: str, boto_session: Any
) -> None:
    count = scale(400, 120)
    for i in range(count):
        write_image(tmp_path / "data" / f"c{i % 4}" / f"{i:04d}.jpg", size=(64, 64))
    bucket = "reliability-cut"
    s3 = boto_session.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=bucket)
    with S3Proxy(moto_url, delay=0.05) as proxy:
        code = (
            "import boto3, sm_imgclf as smi\n"
            "boto = boto3.Session(aws_access_key_id='testing', aws_secret_access_key='testing',"
            " region_name='us-east-1')\n"
            f"session = smi.SageMakerSession({bucket!r}, boto_session=boto, endpoint_urls="
            f"{{'s3': {proxy.url!r}}}, max_concurrency=4)\n"
            f"smi.ImageFolderDataset({str(tmp_path / 'data')!r}).upload(session, 'cut')\n"
        )
        child = subprocess.Popen([sys.executable, "-c", code])

        def stored() -> int:
            return s3.list_objects_v2(Bucket=bucket, Prefix="cut/").get("KeyCount", 0)

        wait_for(lambda: stored() >= count // 3 or child.poll() is not None)
        child.kill()
        child.wait()
    before = stored()
    session = smi.SageMakerSession(
        bucket, boto_session=boto_session, endpoint_urls={"s3": moto_url}
    )
    channels = smi.ImageFolderDataset(tmp_path / "data").upload(session, "cut", progress=False)
    wrong = [
        p
        for p in (tmp_path / "data").rglob("*.jpg")
        if s3.head_object(Bucket=bucket, Key=f"cut/train/{p.relative_to(tmp_path / 'data')}")[
            "ETag"
        ].strip('"')
        != md5(p)
    ]
    FIGURES["upload killed midway"] = {
        "files": count,
        "stored_before_rerun": before,
        "sent_on_rerun": len(channels.summary.uploaded),
        "checksum_mismatches": len(wrong),
    }
    assert 0 < before < count + 2 and not wrong
    assert len(channels.summary.uploaded) <= count - before + 4  # only what was missing


def test_throttling_and_server_errors_are_retried_then_named(
    tmp_path: Path, moto_url: str, boto_session: Any
) -> None:
    for i in range(24):
        write_image(tmp_path / "data" / f"c{i % 3}" / f"{i:03d}.jpg")
    boto_session.client("s3", endpoint_url=moto_url).create_bucket(Bucket="reliability-503")
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def flaky(method: str, path: str) -> int | str | None:
        with lock:
            seen[path] += method == "PUT"
            if method == "PUT" and "c2/" in path:
                return 500  # never recovers
            return 503 if method == "PUT" and seen[path] <= 2 else None

    with S3Proxy(moto_url, fault=flaky) as proxy:
        session = smi.SageMakerSession(
            "reliability-503", boto_session=boto_session, endpoint_urls={"s3": proxy.url}
        )
        session.backend.aws.s3_client = boto_session.client(  # type: ignore[attr-defined]
            "s3",
            endpoint_url=proxy.url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 4}),
        )
        with pytest.raises(smi.TransferError) as caught:
            smi.ImageFolderDataset(tmp_path / "data").upload(session, "flaky", progress=False)
    summary = caught.value.summary
    FIGURES["throttling and 5xx"] = {
        "retried_ok": len(summary.uploaded),
        "named_failures": len(summary.failed),
    }
    assert len(summary.uploaded) == 16 and len(summary.failed) == 8
    assert all("/c2/" in key for key in summary.failed)
    assert "8 of 24 files failed" in str(caught.value)


def test_no_credentials_or_signed_urls_reach_the_logs(
    tmp_path: Path,
    moto_url: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import boto3

    secret = "Zq9SecretKeyThatMustNeverBeLogged0123456789"
    boto = boto3.Session(
        aws_access_key_id="AKIAEXAMPLEKEYID0001",
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    boto.client("s3", endpoint_url=moto_url).create_bucket(Bucket="reliability-logs")
    for i in range(6):
        write_image(tmp_path / "data" / f"c{i % 2}" / f"{i}.jpg")
    caplog.set_level(logging.DEBUG, logger="sm_imgclf")
    session = smi.SageMakerSession(
        "reliability-logs",
        boto_session=boto,
        role="arn:aws:iam::123456789012:role/R",
        endpoint_urls={"s3": moto_url},
    )
    channels = smi.ImageFolderDataset(tmp_path / "data").upload(session, "logs")
    print(channels.summary)
    request = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        compute=smi.Compute(image_uri="1.dkr.ecr.us-east-1.amazonaws.com/x:1"),
    ).dry_run(dict(channels), name="logs-job")
    out, err = capfd.readouterr()
    text = out + err + caplog.text + json.dumps(request)
    for leak in (secret, "X-Amz-Signature", "X-Amz-Credential", "AKIAEXAMPLEKEYID0001"):
        assert leak not in text, leak
    FIGURES["secrets in logs"] = {"checked_chars": len(text), "leaks": 0}


def test_expected_bucket_owner_on_every_s3_call(
    tmp_path: Path, moto_url: str, boto_session: Any
) -> None:
    for i in range(4):
        write_image(tmp_path / "data" / f"c{i % 2}" / f"{i}.jpg")
    boto_session.client("s3", endpoint_url=moto_url).create_bucket(Bucket="reliability-owner")
    session = smi.SageMakerSession(
        "reliability-owner",
        boto_session=boto_session,
        endpoint_urls={"s3": moto_url},
        expected_bucket_owner="123456789012",
    )
    calls: list[tuple[str, str | None]] = []
    client = session.backend.aws.s3_client  # type: ignore[attr-defined]
    client.meta.events.register(
        "before-parameter-build.s3.*",
        lambda params, model, **_: calls.append((model.name, params.get("ExpectedBucketOwner"))),
    )
    smi.ImageFolderDataset(tmp_path / "data").upload(session, "owner", progress=False)
    FIGURES["expected bucket owner"] = {
        "s3_calls": len(calls),
        "without_owner": sum(o is None for _, o in calls),
    }
    assert calls and all(owner == "123456789012" for _, owner in calls), calls
