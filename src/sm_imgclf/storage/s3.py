"""A store in an S3 bucket (or any S3-compatible service), built on boto3 and s3transfer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.contracts.storage import ObjectInfo, ProgressCallback, UploadItem
from sm_imgclf.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    StorageAccessDeniedError,
    StorageError,
)
from sm_imgclf.storage.checksums import file_md5, multipart_etag
from sm_imgclf.storage.local import AtomicWriter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_MiB = 1 << 20
_DENIED = {
    "AccessDenied",
    "403",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}
_MISSING_BUCKET = {"NoSuchBucket", "404", "NotFound"}


class S3Store:
    """Keeps objects in ``s3://bucket/``.

    Transfers go through s3transfer: files above ``multipart_threshold`` are
    sent in parallel parts, and many files are sent at once by
    :func:`~sm_imgclf.storage.upload_files`. Retries on throttling and 5xx use
    botocore's standard mode (exponential backoff with jitter, 10 attempts),
    set on the client by the session.

    Args:
        client: A boto3 S3 client (any ``endpoint_url`` works).
        bucket: The bucket name.
        expected_bucket_owner: An AWS account id; when set, S3 refuses every
            call if the bucket belongs to another account.
        max_concurrency: Files sent at once.
        multipart_threshold: Size in bytes from which a file is sent in parts.
        multipart_chunksize: Size of each part.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        expected_bucket_owner: str | None = None,
        max_concurrency: int = 16,
        multipart_threshold: int = 8 * _MiB,
        multipart_chunksize: int = 8 * _MiB,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.expected_bucket_owner = expected_bucket_owner
        self.max_concurrency = max_concurrency
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r})"

    def uri(self, key: str) -> str:
        """Return ``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    def _owner(self) -> dict[str, Any]:
        owner = self.expected_bucket_owner
        return {"ExpectedBucketOwner": owner} if owner else {}

    def check_access(self) -> None:
        """Check that the bucket exists and the credentials may use it."""
        with self._translate(action="HeadBucket"):
            self.client.head_bucket(Bucket=self.bucket, **self._owner())

    def region(self) -> str:
        """The region the bucket is in (``GetBucketLocation``)."""
        with self._translate(action="GetBucketLocation"):
            answer = self.client.get_bucket_location(Bucket=self.bucket, **self._owner())
        # S3 names us-east-1 by no constraint at all, and eu-west-1 by its old name.
        location = answer.get("LocationConstraint") or "us-east-1"
        return "eu-west-1" if location == "EU" else str(location)

    def list_objects(self, prefix: str) -> dict[str, ObjectInfo]:
        """List every object under ``prefix`` with its size and ETag."""
        found: dict[str, ObjectInfo] = {}
        with self._translate(action="ListObjectsV2", key=prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, **self._owner()
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    found[obj["Key"]] = ObjectInfo(obj["Size"], obj["ETag"].strip('"'))
        return found

    def expected_etag(self, item: UploadItem) -> str:
        """Return the ETag S3 will give ``item`` when uploaded with this store's settings."""
        if item.size < self.multipart_threshold:
            return item.md5 or file_md5(item.path)
        return multipart_etag(item.path, self.multipart_chunksize)

    def put_file(self, item: UploadItem, progress: ProgressCallback) -> None:
        """Upload one file: one PutObject when small, parallel parts through s3transfer when large.

        Small files skip s3transfer, whose per-call thread pool would cost more
        than the request itself; the outer sync already runs files in parallel.
        """
        if item.size < self.multipart_threshold:
            with self._translate(action="PutObject", key=item.key), item.path.open("rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=item.key, Body=body, **self._owner())
            progress(item.size)
            return
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=4,
        )
        with self._translate(action="PutObject", key=item.key):
            self.client.upload_file(
                str(item.path),
                self.bucket,
                item.key,
                ExtraArgs=self._owner() or None,
                Callback=progress,
                Config=config,
            )

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``."""
        with self._translate(action="PutObject", key=key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self._owner())

    def get_bytes(self, key: str) -> bytes:
        """Read the object under ``key``."""
        with self._translate(action="GetObject", key=key):
            response = self.client.get_object(Bucket=self.bucket, Key=key, **self._owner())
            return response["Body"].read()

    def get_file(self, key: str, target: Path) -> Path:
        """Stream the object under ``key`` into ``target``, a megabyte at a time."""
        with self._translate(action="GetObject", key=key):
            response = self.client.get_object(Bucket=self.bucket, Key=key, **self._owner())
            with AtomicWriter(target) as sink:
                for chunk in response["Body"].iter_chunks(_MiB):
                    sink.write(chunk)
        return target

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many there were."""
        keys = sorted(self.list_objects(prefix))
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + 1000]
            ]
            with self._translate(action="DeleteObjects", key=prefix):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}, **self._owner()
                )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageError(
                    f"Could not delete s3://{self.bucket}/{first.get('Key')}: "
                    f"{first.get('Code')}: {first.get('Message')}. Check that the role may "
                    "call s3:DeleteObject on the bucket."
                )
        return len(keys)

    def _translate(self, *, action: str, key: str = "") -> _ErrorTranslator:
        return _ErrorTranslator(self, action, key)


class _ErrorTranslator:
    """Turns botocore's errors into the library's, naming the bucket and what to do."""

    def __init__(self, store: S3Store, action: str, key: str) -> None:
        self.store, self.action, self.key = store, action, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if error is None or isinstance(error, StorageError):
            return
        translated = translate_error(error, self.store.bucket, self.action, self.key)
        if translated is not None:
            raise translated from error


def translate_error(
    error: BaseException, bucket: str, action: str, key: str = ""
) -> StorageError | None:
    """Return the library error for a botocore/boto3 error, or ``None`` to let it pass."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f"s3://{bucket}/{key}"
    if isinstance(error, NoCredentialsError):
        return StorageAccessDeniedError(
            f"{action} on {where} needs AWS credentials and none were found. Configure them "
            "(aws configure, AWS_PROFILE, or boto_session=) and try again."
        )
    code = ""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
    elif isinstance(error, S3UploadFailedError):
        # s3transfer wraps the ClientError in a message: "... (AccessDenied) when calling ..."
        match = re.search(r"\((\w+)\) when calling", str(error))
        code = match.group(1) if match else ""
    if code in _MISSING_BUCKET:
        return BucketNotFoundError(
            f"The bucket {bucket!r} does not exist (or is in another partition). "
            f"Create it, or pass the name of an existing bucket as bucket=."
        )
    if code in _DENIED:
        return StorageAccessDeniedError(
            f"Access denied: {action} on {where} ({code}). Check that the credentials or role "
            f"in use may {action} on the bucket, and that expected_bucket_owner is right."
        )
    if code in {"NoSuchKey"}:
        return ObjectNotFoundError(f"No object at {where}.")
    if isinstance(error, ClientError | BotoCoreError | S3UploadFailedError):
        return StorageError(f"{action} on {where} failed: {error}")
    return None
