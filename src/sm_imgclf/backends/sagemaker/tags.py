"""Tags on everything the library creates on SageMaker: who made it, and the user's own.

``resources`` and ``cleanup`` find the library's resources by these tags, and
a bill broken down by tag shows what each session cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sm_imgclf._version import __version__
from sm_imgclf.contracts.tags import CREATED_BY, SESSION, VERSION


def library_tags(session_id: str) -> dict[str, str]:
    """The tags the library puts on every resource it creates."""
    return {CREATED_BY: "sm-imgclf", VERSION: __version__, SESSION: session_id}


def tagged(
    request: dict[str, Any], session_id: str, extra: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """A copy of a Create* request whose ``Tags`` hold the library's, ``extra`` and its own."""
    merged = {
        **dict(extra),
        **{t["Key"]: t["Value"] for t in request.get("Tags", [])},
        **library_tags(session_id),
    }
    return {**request, "Tags": [{"Key": k, "Value": v} for k, v in merged.items()]}


def created_by_library(tags: Iterable[dict[str, str]]) -> bool:
    """Whether a resource's tags say this library created it."""
    return any(t.get("Key") == CREATED_BY for t in tags)
