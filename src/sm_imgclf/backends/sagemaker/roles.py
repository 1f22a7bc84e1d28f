"""The execution role of a session given none: where SageMaker's own notebooks keep it.

Inside a notebook instance or SageMaker Studio, ``sagemaker.get_execution_role()``
is the first line of most notebooks. This finds the same role without the SDK:
the resource metadata file those environments mount names the notebook
instance, or the Studio domain, user profile and space; their descriptions name
the role. Anywhere else the caller's own identity is used when it is an assumed
role (STS). Each step says where the role came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_FILE = Path("/opt/ml/metadata/resource-metadata.json")
_ASSUMED = re.compile(r"^arn:([\w-]+):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/")


@dataclass(frozen=True)
class FoundRole:
    """A role and where it came from, for the log line that says so."""

    arn: str
    source: str


def from_metadata(sagemaker: Any, metadata_file: Path | None = None) -> FoundRole | None:
    """The role of this notebook instance or Studio user, from its metadata file."""
    metadata_file = metadata_file or METADATA_FILE
    if not metadata_file.is_file():
        return None
    metadata = json.loads(metadata_file.read_text())
    if metadata.get("ExecutionRoleArn"):
        return FoundRole(metadata["ExecutionRoleArn"], f"{metadata_file} (ExecutionRoleArn)")
    domain = metadata.get("DomainId")
    if domain is None:
        name = metadata.get("ResourceName")
        if not name:
            return None
        answer = sagemaker.describe_notebook_instance(NotebookInstanceName=name)
        return FoundRole(answer["RoleArn"], f"notebook instance {name!r}")
    return _studio(sagemaker, domain, metadata)


def _studio(sagemaker: Any, domain: str, metadata: dict[str, Any]) -> FoundRole | None:
    profile = metadata.get("UserProfileName")
    space = metadata.get("SpaceName")
    if space and not profile:  # a shared or private space: its owner's profile
        answer = sagemaker.describe_space(DomainId=domain, SpaceName=space)
        profile = answer.get("OwnershipSettings", {}).get("OwnerUserProfileName")
    if profile:
        answer = sagemaker.describe_user_profile(DomainId=domain, UserProfileName=profile)
        role = answer.get("UserSettings", {}).get("ExecutionRole")
        if role:
            return FoundRole(role, f"Studio user profile {profile!r} of domain {domain}")
    answer = sagemaker.describe_domain(DomainId=domain)
    role = answer.get("DefaultUserSettings", {}).get("ExecutionRole")
    return FoundRole(role, f"the default role of Studio domain {domain}") if role else None


def from_caller(sts: Any, iam: Any) -> FoundRole | None:
    """The role behind the caller's credentials, when they are an assumed role's."""
    caller = sts.get_caller_identity()["Arn"]
    found = _ASSUMED.match(caller)
    if found is None:
        return None
    partition, account, name = found.groups()
    from botocore.exceptions import BotoCoreError, ClientError

    try:  # the role's path (service-role/ ...) is in IAM, not in the caller's ARN
        arn = str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except (BotoCoreError, ClientError):  # no iam:GetRole: the ARN without a path
        arn = f"arn:{partition}:iam::{account}:role/{name}"
    return FoundRole(arn, f"the caller's assumed role ({caller})")


NOT_FOUND = (
    "No role was given and none was found: this is not a SageMaker notebook instance or "
    "Studio (no {file}), and the caller is not an assumed role{why}. Pass "
    "role='arn:aws:iam::<account>:role/<name>' (or the role's name) to SageMakerSession."
)
