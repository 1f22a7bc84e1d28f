"""The default bucket, ``sagemaker-<region>-<account>``, made as AWS's SDK makes it."""

from __future__ import annotations

from typing import Any

from sm_imgclf.backends.sagemaker.errors import translate_errors
from sm_imgclf.errors import StorageAccessDeniedError


def default_bucket(s3: Any, sts: Any, region: str) -> tuple[str, str]:
    """Return the default bucket's name and the account it must belong to; create it if missing.

    The name is the SDK's, so both share one bucket. Every call names the
    caller's account as the expected owner: a bucket of that name in another
    account (a squatter) is refused instead of used. A new bucket blocks all
    public access and enforces the bucket owner's ownership of every object.

    Raises:
        StorageAccessDeniedError: A bucket of that name belongs to another account.
    """
    from botocore.exceptions import ClientError

    with translate_errors("GetCallerIdentity", "sts"):
        account = str(sts.get_caller_identity()["Account"])
    name = f"sagemaker-{region}-{account}"
    try:
        s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
        return name, account
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("403", "AccessDenied"):
            raise StorageAccessDeniedError(
                f"The default bucket name {name!r} is taken by another account, or your "
                "credentials may not read it. Pass a bucket of your own: "
                "SageMakerSession('my-bucket')."
            ) from error
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    _create(s3, name, region)
    return name, account


def _create(s3: Any, name: str, region: str) -> None:
    from botocore.exceptions import ClientError

    where = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    with translate_errors("CreateBucket", name):
        try:
            s3.create_bucket(Bucket=name, **where)
        except ClientError as error:  # made meanwhile by another process of this account
            if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        )
