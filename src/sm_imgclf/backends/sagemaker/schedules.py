"""Endpoints that delete themselves: an EventBridge Scheduler one-time schedule per endpoint.

The schedule's target is SageMaker's ``DeleteEndpoint`` called through
Scheduler's universal (``aws-sdk``) targets, so no Lambda function is needed;
Scheduler supports every API action that is not read-only. The schedule
deletes itself after it runs (``ActionAfterCompletion``), and the library
deletes it when the endpoint is deleted earlier. The endpoint's config and
model cost nothing once the endpoint is gone; ``sm-imgclf cleanup`` removes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

DELETE_TARGET = "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint"  # in the aws partition
DEFAULT_ROLE_NAME = "sm-imgclf-endpoint-deleter"
_PREFIX = "sm-imgclf-delete-"
_IAM_ARN = re.compile(r"^arn:([\w-]+):iam::(\d{12}):")  # its partition and account


def schedule_name(endpoint: str) -> str:
    """The schedule of an endpoint: at most 64 characters, unique per endpoint name."""
    name = _PREFIX + endpoint
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:8]
    return f"{name[:55]}-{digest}"


def partition(region: str) -> str:
    """The ARN partition of ``region``: ``aws``, ``aws-cn`` or ``aws-us-gov``."""
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def delete_target(region: str) -> str:
    """Scheduler's universal target for ``DeleteEndpoint``, in ``region``'s partition."""
    return DELETE_TARGET.replace("arn:aws:", f"arn:{partition(region)}:", 1)


def default_role(execution_role: str) -> str:
    """``sm-imgclf-endpoint-deleter`` in the account and partition of the execution role."""
    account = _IAM_ARN.match(execution_role)
    if account is None:
        from sm_imgclf._params import bad_value

        raise bad_value(
            "delete_role",
            "the ARN of a role EventBridge Scheduler may assume",
            None,
            "Pass delete_role= (see the costs page of the docs).",
        )
    return f"arn:{account.group(1)}:iam::{account.group(2)}:role/{DEFAULT_ROLE_NAME}"


def role_problem(role: str, region: str) -> str | None:
    """Why Scheduler in ``region`` could not assume ``role``: an ARN of another partition."""
    found = _IAM_ARN.match(role)
    if found is None or ":role/" not in role:
        shape = f"arn:{partition(region)}:iam::ACCOUNT:role/NAME"
        return f"delete_role must be an IAM role ARN ({shape})"
    if found.group(1) != partition(region):
        return (
            f"delete_role {role!r} is in the {found.group(1)!r} partition, but {region} is in "
            f"{partition(region)!r}; pass a role of that partition"
        )
    return None


def schedule_request(endpoint: str, when: dt.datetime, role: str, region: str) -> dict[str, Any]:
    """The ``CreateSchedule`` request that deletes ``endpoint`` at ``when`` (UTC)."""
    moment = when.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None)
    return {
        "Name": schedule_name(endpoint),
        "ScheduleExpression": f"at({moment.isoformat()})",
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": delete_target(region),
            "RoleArn": role,
            "Input": json.dumps({"EndpointName": endpoint}),
        },
        "ActionAfterCompletion": "DELETE",
        "Description": f"sm-imgclf: delete endpoint {endpoint} at {moment.isoformat()}Z",
    }
