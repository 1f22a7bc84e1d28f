"""The SageMaker backend's AWS clients: made on first use, with one retry policy."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value
from sm_imgclf._version import __version__
from sm_imgclf.backends.sagemaker.errors import translate_errors
from sm_imgclf.backends.sagemaker.prices import PriceBook, price_cache_path
from sm_imgclf.storage.s3 import S3Store

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client


class SageMakerClients:
    """Stores data in an S3 bucket; clients are created on first use.

    Args:
        bucket: The bucket for datasets, job outputs and models; by default
            ``sagemaker-<region>-<account>``, as AWS's SDK names it, made on first
            use if missing.
        region: AWS region; defaults to the boto3 session's.
        boto_session: A ready ``boto3.Session`` (credentials, profile); one is
            made from the environment when omitted.
        endpoint_urls: Endpoint URL by service name (``s3``, ``sagemaker``, ``logs``),
            for S3-compatible stores, VPC endpoints or test servers.
        expected_bucket_owner: Account id the bucket must belong to.
        max_concurrency: Files sent at once.
        tags: Tags for everything this backend creates, beside the library's own
            (``sm-imgclf:created-by``, ``sm-imgclf:version``, ``sm-imgclf:session``).
    """

    def __init__(
        self,
        bucket: str | None = None,
        *,
        region: str | None = None,
        boto_session: boto3.Session | None = None,
        endpoint_urls: Mapping[str, str] | None = None,
        expected_bucket_owner: str | None = None,
        max_concurrency: int = 16,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        import uuid

        from sm_imgclf.contracts.tags import check_user_tags

        self.tags = check_user_tags(tags)
        # Names what one session object created, so its resources can be found together.
        self.session_id = uuid.uuid4().hex[:12]
        self._bucket = bucket
        self.region = region
        self._boto_session = boto_session
        self.endpoint_urls = dict(endpoint_urls or {})
        self.expected_bucket_owner = expected_bucket_owner
        self.max_concurrency = max_concurrency
        self._bucket_region_checked = False
        self._role_arns: dict[str, str] = {}
        self._warned_buckets: set[str] = set()
        self.price_cache: Path | None = price_cache_path()

    def __repr__(self) -> str:
        bucket = self._bucket or "sagemaker-<region>-<account>"
        return f"{type(self).__name__}(bucket={bucket!r}, region={self.region!r})"

    @property
    def bucket(self) -> str:
        """The bucket; ``sagemaker-<region>-<account>`` when none was given (made if missing).

        The default bucket is looked up, and created, on first use only; its
        account becomes the expected owner of every S3 call.
        """
        if self._bucket is None:
            from sm_imgclf.backends.sagemaker.bucket import default_bucket

            self._bucket, account = default_bucket(
                self.s3_client, self.client("sts"), self.region_name
            )
            self.expected_bucket_owner = self.expected_bucket_owner or account
        return self._bucket

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
            endpoint_url=self.endpoint_urls.get("s3"),
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

    @property
    def region_name(self) -> str:
        """The region of the clients."""
        region = self.region or self.boto_session.region_name
        if not region:
            raise bad_value(
                "region",
                "an AWS region such as 'us-east-1'",
                region,
                "Pass region= to SageMakerSession or set AWS_DEFAULT_REGION.",
            )
        return str(region)

    @cached_property
    def scheduler_client(self) -> Any:
        """The EventBridge Scheduler client (endpoints that delete themselves)."""
        return self.client("scheduler")

    @cached_property
    def prices(self) -> PriceBook:
        """Instance prices: the Price List API (cached on disk), else the library's table."""
        from botocore.config import Config

        def pricing() -> Any:
            # The API lives in us-east-1 whatever the session's region; one quick try,
            # since the table answers when it cannot be reached.
            session: Any = self.boto_session
            return session.client(
                "pricing",
                region_name="us-east-1",
                endpoint_url=self.endpoint_urls.get("pricing"),
                config=Config(
                    connect_timeout=3,
                    read_timeout=10,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )

        return PriceBook(self.region_name, pricing, cache=self.price_cache)

    def checked(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` with the library's and the session's tags, checked against the model.

        Raises:
            ConfigurationError: The request breaks SageMaker's service model.
        """
        from sm_imgclf.backends.sagemaker.tags import tagged
        from sm_imgclf.backends.sagemaker.training import validate_request

        request = tagged(request, self.session_id, self.tags)
        validate_request(self.sagemaker_client, operation, request)
        return request

    def client(self, service: str) -> Any:
        """Return a client for ``service`` with the shared retry configuration."""
        session: Any = self.boto_session  # boto3's stubs overload client() per service name
        return session.client(
            service,
            region_name=self.region_name,
            endpoint_url=self.endpoint_urls.get(service),
            config=self.client_config(pool=10),
        )

    def role_arn(self, role: str | None) -> str | None:
        """The ARN of ``role``: as given if it is one, else looked up by name once (IAM).

        Without a role, the notebook's or the caller's own is found once
        (:mod:`~sm_imgclf.backends.sagemaker.roles`).

        Raises:
            ConfigurationError: No role was given and none was found.
        """
        if role is None:
            found, problem = self.found_role
            if found is None:
                from sm_imgclf.backends.sagemaker import roles
                from sm_imgclf.errors import ConfigurationError

                raise ConfigurationError(
                    "SageMaker needs an IAM role to run jobs and endpoints as. "
                    + roles.NOT_FOUND.format(file=roles.METADATA_FILE, why=problem)
                )
            return found
        if role.startswith("arn:"):
            return role
        if role not in self._role_arns:
            with translate_errors("GetRole", role):
                iam = self.client("iam")
                try:
                    found = iam.get_role(RoleName=role)
                except iam.exceptions.NoSuchEntityException:
                    raise bad_value(
                        "role",
                        "an IAM role of this account, by name or ARN",
                        role,
                        "Create one that SageMaker may assume (with "
                        "AmazonSageMakerFullAccess), or pass its ARN.",
                    ) from None
            self._role_arns[role] = str(found["Role"]["Arn"])
        return self._role_arns[role]

    @cached_property
    def found_role(self) -> tuple[str | None, str]:
        """The role of this notebook instance, Studio user or assumed-role caller.

        Looked for once: ``(arn, "")``, or ``(None, why)`` when none was found.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        from sm_imgclf.backends.sagemaker import roles

        try:
            found = roles.from_metadata(self.sagemaker_client) or roles.from_caller(
                self.client("sts"), self.client("iam")
            )
        except (BotoCoreError, ClientError) as error:
            return None, f" (looking failed: {error})"
        if found is None:
            return None, ""
        print(f"role: {found.arn}, from {found.source}", flush=True)
        return found.arn, ""

    def check_quota(self, instance_type: str, usage: str, count: int = 1) -> None:
        """Refuse ``count`` instances an account quota of zero (or fewer) could not start.

        The quota is read from Service Quotas (``"<type> for <usage>"``, e.g.
        ``"ml.g4dn.xlarge for training job usage"``), once per backend. Where the
        caller may not read quotas, or SageMaker is reached through an endpoint URL
        of its own without one for Service Quotas (a VPC endpoint, a test server),
        the check is skipped: the service still refuses what it must.

        Raises:
            ConfigurationError: Naming the quota, its value and how to raise it.
        """
        name = f"{instance_type} for {usage}"
        quota = self._quotas.get(name)
        if quota is not None and quota["Value"] < count:
            raise bad_value(
                "instance_type",
                f"a type this account may run {count} of for {usage}",
                instance_type,
                f"Its quota '{name}' ({quota['QuotaCode']}) is "
                f"{quota['Value']:g}. Request an increase in the Service Quotas console "
                "(service SageMaker), or choose another instance type.",
            )

    @cached_property
    def quotas_client(self) -> Any:
        """The Service Quotas client: one quick attempt, since the check is a courtesy."""
        from botocore.config import Config

        session: Any = self.boto_session
        return session.client(
            "service-quotas",
            region_name=self.region_name,
            endpoint_url=self.endpoint_urls.get("service-quotas"),
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=10),
        )

    @cached_property
    def _quotas(self) -> dict[str, dict[str, Any]]:
        """SageMaker's quotas by name, read once; empty where they cannot be read."""
        from botocore.exceptions import BotoCoreError, ClientError

        if "sagemaker" in self.endpoint_urls and "service-quotas" not in self.endpoint_urls:
            return {}
        table: dict[str, dict[str, Any]] = {}
        try:
            pages = self.quotas_client.get_paginator("list_service_quotas")
            for page in pages.paginate(ServiceCode="sagemaker"):
                table |= {q["QuotaName"]: q for q in page["Quotas"]}
        except (BotoCoreError, ClientError):  # no permission, or no such endpoint
            return {}
        return table

    def check_bucket_region(self) -> None:
        """Refuse a bucket in another region than the jobs: SageMaker cannot read it there."""
        if self._bucket_region_checked:
            return
        location = self.store.region()
        if location != self.region_name:
            raise bad_value(
                "bucket",
                f"a bucket in {self.region_name}, where the jobs run",
                f"{self.bucket} (in {location})",
                f"Pass region={location!r}, or a bucket in {self.region_name}.",
            )
        self._bucket_region_checked = True
        self.warn_bucket_policy(self.bucket)

    def warn_bucket_policy(self, bucket: str) -> None:
        """Warn once, before the first create, about a bucket the managed policy misses.

        AmazonSageMakerFullAccess grants S3 access only on buckets whose names
        contain "sagemaker" (any case): with another bucket the role needs a
        policy of its own, or the job fails only once it starts.
        """
        if "sagemaker" in bucket.lower() or bucket in self._warned_buckets:
            return
        import warnings

        from sm_imgclf.backends.sagemaker.schedules import partition

        arn = f"arn:{partition(self.region_name)}:s3:::{bucket}"
        self._warned_buckets.add(bucket)
        warnings.warn(
            f"Bucket {bucket!r} has no 'sagemaker' in its name, and the AmazonSageMakerFullAccess "
            "policy covers only buckets that do. Unless the execution role has a policy of its "
            f"own, give it s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on "
            f"{arn} and {arn}/* (SageMaker reads the data and "
            "writes models and checkpoints there with that role).",
            UserWarning,
            stacklevel=2,
        )

    @cached_property
    def sagemaker_client(self) -> Any:
        """The SageMaker client."""
        return self.client("sagemaker")

    @cached_property
    def logs_client(self) -> Any:
        """The CloudWatch Logs client."""
        return self.client("logs")

    @cached_property
    def runtime_client(self) -> Any:
        """The SageMaker runtime client."""
        return self.client("sagemaker-runtime")
