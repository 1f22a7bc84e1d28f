"""What local work costs: nothing, unless the user prices this machine's hour to rehearse."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sm_imgclf.contracts.costs import CostEstimate, Price, estimate_for
from sm_imgclf.contracts.resources import ENDPOINT, TRAINING, Resource
from sm_imgclf.contracts.speeds import Expected
from sm_imgclf.contracts.status import JobState
from sm_imgclf.contracts.training import TrainingSpec


def price(use: str, usd_per_hour: float = 0.0) -> Price:
    """The price of an hour of this machine (0 unless the session set one)."""
    source = "the price_per_hour you set" if usd_per_hour else "local work"
    return Price("this machine", use, "local", usd_per_hour, source, dt.date.today().isoformat())


def estimate(
    spec: Any, usd_per_hour: float, expect: Callable[[TrainingSpec], Expected | None] | None = None
) -> CostEstimate:
    """The estimate of local work, with its time bound (and expected time, if measured)."""
    found = estimate_for(spec, lambda _type, use: price(use, usd_per_hour), expect)
    return replace(
        found,
        instance_type="this machine",
        instance_count=1,
        spot=False,
        note="runs on this machine: no AWS charge",
    )


def resources(backend: Any) -> list[Resource]:
    """Local endpoints serving and jobs running, of a :class:`LocalBackend`."""

    def made(path: Path) -> dt.datetime:
        return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)

    rate = backend.price_per_hour
    found = [
        Resource(
            ENDPOINT,
            row["name"],
            row["status"],
            made(backend.endpoint_dir(row["name"])),
            "this machine",
            1,
            (),
            True,
            price("hosting", rate),
        )
        for row in backend.list_endpoints()
        if row["status"] == "InService"
    ]
    found += [
        Resource(
            TRAINING,
            row["name"],
            str(row["status"]),
            made(backend.job_dir(row["name"])),
            "this machine",
            1,
            (),
            True,
            price("training", rate),
        )
        for row in backend.list_jobs()
        if row["status"] == JobState.IN_PROGRESS
    ]
    return found
