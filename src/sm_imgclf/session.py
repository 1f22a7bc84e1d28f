"""Sessions: which backend runs the work, and with what settings."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sm_imgclf._params import bad_value, check_number
from sm_imgclf.contracts.backend import Backend
from sm_imgclf.contracts.tracking import check_tracking_uri

if TYPE_CHECKING:
    import boto3

    from sm_imgclf.contracts.costs import CostEstimate
    from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
    from sm_imgclf.contracts.resources import Resource
    from sm_imgclf.contracts.storage import Store
    from sm_imgclf.contracts.training import TrainingSpec
    from sm_imgclf.contracts.tuning import TuningSpec

__all__ = ["LocalSession", "SageMakerSession", "Session"]


class Session:
    """Hands the library's work to one backend.

    Most code uses :class:`LocalSession` or :class:`SageMakerSession`; pass any
    object implementing :class:`~sm_imgclf.backends.Backend` here, for
    example ``Session(FakeBackend())`` in tests.

    Args:
        backend: The backend that stores data and runs jobs.
        role: The IAM role that jobs and models run as, where the backend needs
            one (SageMaker): its ARN, or its name, which the SageMaker backend
            turns into the ARN (IAM ``GetRole``) when it first builds a request;
            ``None`` elsewhere.
    """

    role: str | None

    def __init__(
        self, backend: Backend, *, role: str | None = None, tracking_uri: str | None = None
    ) -> None:
        # A static look: isinstance() on the protocol would evaluate lazy properties.
        if any(inspect.getattr_static(backend, name, None) is None for name in ("name", "store")):
            raise bad_value("backend", "an object implementing the Backend protocol", backend)
        if role is not None and not (
            isinstance(role, str)
            and (role.startswith("arn:") or re.fullmatch(r"[\w+=,.@-]{1,64}", role))
        ):
            raise bad_value(
                "role",
                "an IAM role ARN such as 'arn:aws:iam::123456789012:role/X', or a role's name",
                role,
            )
        self.backend = backend
        self.role = role
        self.tracking_uri = check_tracking_uri(tracking_uri)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"

    @property
    def store(self) -> Store:
        """The backend's store."""
        return self.backend.store

    def resources(self) -> list[Resource]:
        """What costs money now: endpoints up and jobs in progress, with their prices."""
        return self.backend.list_resources()

    def cleanup(
        self,
        names: Iterable[str] = (),
        *,
        older_than: str | None = None,
        tags: Mapping[str, str] | None = None,
        by_library: bool = False,
        dry_run: bool = False,
    ) -> list[Resource]:
        """Delete the endpoints and stop the jobs that match every criterion given.

        Args:
            names: Resource names.
            older_than: A duration such as ``"2h"``: only what is older.
            tags: Only what carries every one of these tags.
            by_library: Only what this library created.
            dry_run: Only return what would be removed.

        Returns:
            The resources removed (or, with ``dry_run``, that would be).

        Raises:
            ConfigurationError: No criterion was given.
        """
        from sm_imgclf.contracts.resources import select

        chosen = select(
            self.resources(), names=names, older_than=older_than, tags=tags, by_library=by_library
        )
        if not dry_run:
            for resource in chosen:
                self.backend.remove_resource(resource)
        return chosen

    def estimate(self, spec: TrainingSpec | TuningSpec | DeploySpec | BatchSpec) -> CostEstimate:
        """What the work ``spec`` describes may cost (see :class:`~sm_imgclf.CostEstimate`)."""
        return self.backend.estimate(spec)


def default_root() -> Path:
    """Return ``$SM_IMGCLF_HOME``, or ``~/.sm-imgclf`` when it is unset."""
    return Path(os.environ.get("SM_IMGCLF_HOME") or Path.home() / ".sm-imgclf")


class LocalSession(Session):
    """Runs everything on this machine, under one directory, with no AWS account.

    Nothing is created until the first write.

    Args:
        root: The session directory; defaults to ``$SM_IMGCLF_HOME`` or ``~/.sm-imgclf``.
        max_concurrency: Files copied at once when uploading.
        feature_store: Let head-only jobs without augmentation share the frozen
            backbone's features through ``<root>/features``: the first job with a
            given model, weights, image size and data computes them, every later
            one reads them instead of running the backbone.
        price_per_hour: What an hour of this machine is worth in US dollars
            (default 0): set it to rehearse a tuning run's ``max_cost`` locally,
            which then starts no trial that could pass the budget.
        tracking_uri: Log every job and tuning run to this MLflow tracking
            server or store (``http://...``, ``sqlite:///...``, a folder); by
            default ``MLFLOW_TRACKING_URI`` when it is set, else nothing is
            tracked. See :doc:`/tracking`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        max_concurrency: int = 4,
        feature_store: bool = True,
        price_per_hour: float = 0.0,
        tracking_uri: str | None = None,
    ) -> None:
        from sm_imgclf.backends.local.backend import LocalBackend

        check_number("max_concurrency", max_concurrency, low=1, integer=True)
        self.root = Path(root).expanduser().absolute() if root is not None else default_root()
        check_number("price_per_hour", price_per_hour, low=0.0)
        super().__init__(
            LocalBackend(
                self.root,
                max_concurrency=max_concurrency,
                feature_store=bool(feature_store),
                price_per_hour=float(price_per_hour),
            ),
            tracking_uri=tracking_uri,
        )


class SageMakerSession(Session):
    """Runs on Amazon SageMaker, keeping data in an S3 bucket.

    No AWS call is made until the first piece of work needs one.

    Args:
        bucket: The S3 bucket for datasets, job outputs and models; by default
            ``sagemaker-<region>-<account>`` (AWS's SDK uses the same), created
            on first use if missing, with public access blocked and objects
            owned by the bucket owner.
        role: The IAM role SageMaker jobs run as: an ARN, or a role name.
        region: The AWS region; defaults to the boto3 session's.
        boto_session: A ready ``boto3.Session``; made from the environment when omitted.
        endpoint_urls: Endpoint URL by service name (``"s3"``, ``"sagemaker"``,
            ``"logs"``): an S3-compatible store, VPC endpoints, or a test server.
        expected_bucket_owner: The account id the bucket must belong to; S3
            refuses every call otherwise.
        max_concurrency: Files sent at once when uploading.
        tags: Tags for every training and tuning job, model, endpoint config,
            endpoint and transform job this session creates, beside the three the
            library always sets (``sm-imgclf:created-by``, ``sm-imgclf:version``,
            ``sm-imgclf:session``).
        tracking_uri: Log every job and tuning run to this MLflow tracking
            server (``https://...``, or a SageMaker managed MLflow tracking
            server's ARN); by default ``MLFLOW_TRACKING_URI`` when it is set.
            The jobs reach it themselves, so it must be reachable from SageMaker.
    """

    def __init__(
        self,
        bucket: str | None = None,
        *,
        role: str | None = None,
        region: str | None = None,
        boto_session: boto3.Session | None = None,
        endpoint_urls: Mapping[str, str] | None = None,
        expected_bucket_owner: str | None = None,
        max_concurrency: int = 16,
        tags: Mapping[str, str] | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        from sm_imgclf.backends.sagemaker.backend import SageMakerBackend

        if bucket is not None:
            _check_bucket(bucket)
        check_number("max_concurrency", max_concurrency, low=1, high=256, integer=True)
        super().__init__(
            SageMakerBackend(
                bucket,
                region=region,
                boto_session=boto_session,
                endpoint_urls=endpoint_urls,
                expected_bucket_owner=expected_bucket_owner,
                max_concurrency=max_concurrency,
                tags=tags,
            ),
            role=role,
            tracking_uri=tracking_uri,
        )


def _check_bucket(bucket: object) -> None:
    import re

    expected = "an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'"
    valid = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
    if not isinstance(bucket, str) or not re.fullmatch(valid, bucket):
        scheme = str(bucket).startswith("s3://")
        hint = "Pass the bucket name alone, without 's3://'." if scheme else ""
        raise bad_value("bucket", expected, bucket, hint)
