"""The package surface: free imports, the lazy API, the error tree, sessions."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sm_imgclf as smi

HEAVY = ("torch", "torchvision", "boto3", "botocore", "sagemaker", "PIL", "numpy", "tqdm")


def run_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_import_is_free() -> None:
    loaded = run_python(
        f"import sys, sm_imgclf\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert loaded == ""


def test_building_sessions_imports_nothing_heavy(tmp_path: object) -> None:
    loaded = run_python(
        "import sys, sm_imgclf as smi\n"
        "smi.LocalSession('/tmp/x'); smi.SageMakerSession('my-bucket', region='eu-west-1')\n"
        "smi.ImageFolderDataset('/nowhere')\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert loaded == ""


def test_every_public_name_resolves() -> None:
    for name in smi.__all__:
        assert getattr(smi, name) is not None
    assert sorted(dir(smi)) == sorted(smi.__all__)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        smi.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_error_tree() -> None:
    assert issubclass(smi.ConfigurationError, ValueError)
    assert issubclass(smi.MissingDependencyError, ImportError)
    assert issubclass(smi.DatasetNotFoundError, FileNotFoundError)
    for error in (
        smi.ConfigurationError,
        smi.DatasetError,
        smi.StorageError,
        smi.BackendError,
        smi.BucketNotFoundError,
        smi.TransferError,
        smi.DatasetValidationError,
    ):
        assert issubclass(error, smi.SmImgclfError)


@pytest.mark.parametrize(
    ("bucket", "hint"),
    [
        ("s3://my-bucket", "without 's3://'"),
        ("My_Bucket", "3-63 lowercase"),
        ("ab", "3-63"),
        (42, "bucket name"),
    ],
)
def test_bad_bucket_names(bucket: object, hint: str) -> None:
    with pytest.raises(smi.ConfigurationError, match=hint):
        smi.SageMakerSession(bucket)  # type: ignore[arg-type]


def test_bad_role_and_concurrency() -> None:
    with pytest.raises(smi.ConfigurationError, match="role must be an IAM role ARN"):
        smi.SageMakerSession("my-bucket", role="my sagemaker role!")
    assert smi.SageMakerSession("my-bucket", role="MySageMakerRole").role == "MySageMakerRole"
    with pytest.raises(smi.ConfigurationError, match="max_concurrency must be"):
        smi.SageMakerSession("my-bucket", max_concurrency=0)
    with pytest.raises(smi.ConfigurationError, match="max_concurrency must be an integer"):
        smi.LocalSession(max_concurrency=2.5)  # type: ignore[arg-type]


def test_session_requires_a_backend() -> None:
    with pytest.raises(smi.ConfigurationError, match="Backend protocol"):
        smi.Session(object())  # type: ignore[arg-type]
    assert smi.Session(smi.FakeBackend()).store.uri("k") == "memory://fake/k"


def test_local_session_root(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("SM_IMGCLF_HOME", str(tmp_path))
    assert smi.LocalSession().root == tmp_path
    assert smi.LocalSession("~/x").root.is_absolute()


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from sm_imgclf._lazy import require

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(smi.MissingDependencyError, match=r'pip install "sm-imgclf\[demo\]"') as e:
        require("sklearn.datasets", extra="demo")
    assert e.value.extra == "demo"


def test_local_store_refuses_keys_leaving_its_root(tmp_path: object) -> None:
    store = smi.LocalSession(str(tmp_path)).store
    for key in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(smi.ConfigurationError, match="inside the store"):
            store.put_bytes(key, b"x")
