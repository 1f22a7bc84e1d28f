from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import sm_imgclf as smi
from helpers.images import make_dataset

# Read before the line below sets it: CI runs what a developer's machine may skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
os.environ.setdefault("CI", "1")  # no progress bars in test output
# Never let a test reach real AWS credentials or config.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask 169.254.169.254 for credentials
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's own cache: no user's prices or measured speeds, none left behind."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


@pytest.fixture
def dataset_root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def local_session(tmp_path: Path) -> smi.LocalSession:
    return smi.LocalSession(tmp_path / "session")


# Fixtures that train a model (or serve one they trained): their tests are slow.
TRAINING_FIXTURES = frozenset({"trained", "endpoint", "digits", "digits_folder", "splits"})


# Suites with sessions of their own (they install AWS's toolkits, need a GPU or run long):
# left out unless the -m expression names them, so `-m "not slow"` is the fast lane.
OWN_SESSIONS = ("toolkits", "reliability", "gpu", "rayserve", "tracking")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = config.getoption("markexpr") or ""
    kept, left = [], []
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        own = [m for m in OWN_SESSIONS if item.get_closest_marker(m)]
        (left if own and not any(m in chosen for m in own) else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.fixture
def chromium() -> str:
    """Headless Chromium's path; skipped where it is missing, except in CI (which installs it)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:
        return browser
    if IN_CI:
        pytest.fail("chromium is needed in CI; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto S3 server over real HTTP on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def boto_session():  # type: ignore[no-untyped-def]
    import boto3

    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture
def bucket(moto_url: str, boto_session, request: pytest.FixtureRequest) -> str:  # type: ignore[no-untyped-def]
    name = f"sagemaker-test-{abs(hash(request.node.nodeid)) % 10**10}"
    client = boto_session.client("s3", endpoint_url=moto_url)
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    return smi.SageMakerSession(
        bucket, boto_session=boto_session, endpoint_urls={"s3": moto_url}, max_concurrency=8
    )
