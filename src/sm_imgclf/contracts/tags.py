"""Tags: the keys the library reserves, and the check of a user's own tags (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sm_imgclf._params import bad_value

CREATED_BY = "sm-imgclf:created-by"
VERSION = "sm-imgclf:version"
SESSION = "sm-imgclf:session"
DELETE_AT = "sm-imgclf:delete-after"
RESERVED_PREFIX = "sm-imgclf:"
# SageMaker's Tag shape: keys 1-128 and values 0-256 characters of this set; 50 per resource.
_ALLOWED = re.compile(r"[\w .:/=+\-@]*")
MAX_TAGS = 50


def check_user_tags(
    tags: Mapping[str, str] | Iterable[tuple[str, str]] | None, parameter: str = "tags"
) -> tuple[tuple[str, str], ...]:
    """The user's tags as sorted pairs, refusing what SageMaker or the library would refuse."""
    pairs = dict(tags.items() if isinstance(tags, Mapping) else (tags or ()))
    for key, value in pairs.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not _ALLOWED.fullmatch(key):
            raise bad_value(parameter, "keys of 1-128 letters, digits, spaces and _.:/=+-@", key)
        if key.startswith(("aws:", RESERVED_PREFIX)):
            raise bad_value(
                parameter,
                f"keys that do not start with 'aws:' or "
                f"{RESERVED_PREFIX!r} (the library sets those)",
                key,
            )
        if not isinstance(value, str) or len(value) > 256 or not _ALLOWED.fullmatch(value):
            raise bad_value(
                f"{parameter}[{key!r}]",
                "a value of at most 256 letters, digits, spaces and _.:/=+-@",
                value,
            )
    if len(pairs) > MAX_TAGS - 3:
        raise bad_value(
            parameter,
            f"at most {MAX_TAGS - 3} tags (SageMaker takes {MAX_TAGS}; the library adds 3)",
            len(pairs),
        )
    return tuple(sorted(pairs.items()))
