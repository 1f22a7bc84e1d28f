"""The SageMaker backend: S3 for storage, the SageMaker service API through boto3."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from sm_imgclf._version import __version__
from sm_imgclf.storage.s3 import S3Store

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client


class SageMakerBackend:
    """Stores data in an S3 bucket; clients are created on first use.

    Args:
        bucket: The bucket for datasets, job outputs and models.
        region: AWS region; defaults to the boto3 session's.
        boto_session: A ready ``boto3.Session`` (credentials, profile); one is
            made from the environment when omitted.
        s3_endpoint_url: Another S3-compatible endpoint (MinIO, a VPC endpoint).
        expected_bucket_owner: Account id the bucket must belong to.
        max_concurrency: Files sent at once.
    """

    name = "sagemaker"

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        boto_session: boto3.Session | None = None,
        s3_endpoint_url: str | None = None,
        expected_bucket_owner: str | None = None,
        max_concurrency: int = 16,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self._boto_session = boto_session
        self.s3_endpoint_url = s3_endpoint_url
        self.expected_bucket_owner = expected_bucket_owner
        self.max_concurrency = max_concurrency

    def __repr__(self) -> str:
        return f"SageMakerBackend(bucket={self.bucket!r}, region={self.region!r})"

    @cached_property
    def boto_session(self) -> boto3.Session:
        """The boto3 session, made from the environment if none was given."""
        if self._boto_session is not None:
            return self._boto_session
        import boto3

        return boto3.Session(region_name=self.region)

    def client_config(self, pool: int) -> Any:
        """Return the botocore config shared by our clients: standard retries, a pool size."""
        from botocore.config import Config

        return Config(
            retries={"mode": "standard", "total_max_attempts": 10},
            max_pool_connections=pool,
            user_agent_extra=f"sm-imgclf/{__version__}",
        )

    @cached_property
    def s3_client(self) -> S3Client:
        """The S3 client, sized for :attr:`max_concurrency` parallel transfers."""
        return self.boto_session.client(
            "s3",
            region_name=self.region or self.boto_session.region_name,
            endpoint_url=self.s3_endpoint_url,
            config=self.client_config(pool=self.max_concurrency * 4),
        )

    @cached_property
    def store(self) -> S3Store:
        """The S3 store for :attr:`bucket`."""
        return S3Store(
            self.s3_client,
            self.bucket,
            expected_bucket_owner=self.expected_bucket_owner,
            max_concurrency=self.max_concurrency,
        )
