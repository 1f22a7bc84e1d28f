"""Billable resources (endpoints up, jobs running) and the choice of which to clean up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sm_imgclf._params import parse_duration
from sm_imgclf.contracts.costs import Price
from sm_imgclf.errors import ConfigurationError

ENDPOINT = "endpoint"
TRAINING = "training job"
TUNING = "tuning job"
TRANSFORM = "transform job"


@dataclass(frozen=True)
class Resource:
    """Something that costs money while it exists: an endpoint up, a job in progress.

    Attributes:
        kind: ``"endpoint"``, ``"training job"``, ``"tuning job"`` or ``"transform job"``.
        name: Its name.
        status: Its status as the backend reports it.
        created: When it was created (or started running), in UTC.
        instance_type: Its instance type (``None`` when it has none, e.g. serverless).
        instance_count: Instances it runs on.
        tags: Its tags.
        by_library: Whether this library created it (its tags say so).
        price: The price of one instance-hour, when known; a tuning job's
            trials are listed and priced as training jobs, so it has none.
    """

    kind: str
    name: str
    status: str
    created: dt.datetime | None
    instance_type: str | None
    instance_count: int
    tags: tuple[tuple[str, str], ...]
    by_library: bool
    price: Price | None = None

    def age_hours(self, now: dt.datetime) -> float | None:
        """Hours since it was created."""
        if self.created is None:
            return None
        return max(0.0, (now - self.created).total_seconds() / 3600)

    @property
    def usd_per_hour(self) -> float | None:
        """What it costs per hour now, when its price is known."""
        return None if self.price is None else self.price.usd_per_hour * self.instance_count

    def usd_so_far(self, now: dt.datetime) -> float | None:
        """What it has cost since it was created, at its on-demand price."""
        hours, rate = self.age_hours(now), self.usd_per_hour
        return None if hours is None or rate is None else hours * rate


def select(
    resources: Iterable[Resource],
    *,
    names: Iterable[str] = (),
    older_than: str | None = None,
    tags: Mapping[str, str] | None = None,
    by_library: bool = False,
    now: dt.datetime | None = None,
) -> list[Resource]:
    """The resources that match every criterion given.

    Raises:
        ConfigurationError: No criterion was given (cleaning up everything by
            accident is what this refuses), or a duration is malformed.
    """
    wanted, tags = set(names), dict(tags or {})
    if not (wanted or older_than or tags or by_library):
        raise ConfigurationError(
            "Say what to clean up: names, older_than (--older-than 2h), tags (--tag KEY=VALUE) "
            "or by_library (--created-by-library); nothing is chosen by default."
        )
    limit = parse_duration("older_than", older_than) / 3600 if older_than else None
    now = now or dt.datetime.now(dt.UTC)
    chosen = []
    for item in resources:
        age = item.age_hours(now)
        if (
            (wanted and item.name not in wanted)
            or (by_library and not item.by_library)
            or (limit is not None and (age is None or age < limit))
            or any(dict(item.tags).get(k) != v for k, v in tags.items())
        ):
            continue
        chosen.append(item)
    return chosen
