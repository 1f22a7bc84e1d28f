"""Prices and cost estimates: plain data, computed without I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value
from sm_imgclf.contracts.speeds import Expected
from sm_imgclf.contracts.training import TrainingSpec

if TYPE_CHECKING:
    from sm_imgclf.contracts.tuning import TuningSpec

# SageMaker bills managed spot training for what it uses, at up to 90% less than
# on demand; the saving varies by instance type, region and hour. Estimates use
# this share of the on-demand price and say so.
SPOT_SHARE = 0.3


@dataclass(frozen=True)
class Price:
    """The on-demand price of one SageMaker instance for one use.

    Attributes:
        instance_type: Such as ``"ml.g4dn.xlarge"``.
        use: ``"training"``, ``"hosting"`` or ``"transform"``.
        region: The AWS region the price is for.
        usd_per_hour: US dollars per instance-hour.
        source: ``"AWS Price List API"`` or ``"the library's table"``.
        as_of: The date the figure was read (``YYYY-MM-DD``).
    """

    instance_type: str
    use: str
    region: str
    usd_per_hour: float
    source: str
    as_of: str

    def __str__(self) -> str:
        return f"${self.usd_per_hour:.4g}/h ({self.source}, {self.as_of})"


@dataclass(frozen=True)
class CostEstimate:
    """What a piece of work may cost before it starts.

    Attributes:
        what: ``"training"``, ``"tuning"``, ``"endpoint"`` or ``"batch transform"``.
        instance_type: The instance type.
        instance_count: Instances at once.
        hours: The hours it may run at most (for an endpoint: one hour, per hour).
        price: The price used, or ``None`` when unknown.
        spot: Whether managed spot training is used.
        note: Why a figure is missing, or what it assumes.
        expected_hours: The instance-hours a training or tuning run is
            expected to take from a measured speed (see
            :mod:`sm_imgclf.contracts.speeds`); ``None`` when no speed is known.
        expected_basis: How :attr:`expected_hours` was worked out.
    """

    what: str
    instance_type: str
    instance_count: int
    hours: float
    price: Price | None
    spot: bool = False
    note: str = ""
    expected_hours: float | None = None
    expected_basis: str = ""

    @property
    def on_demand_usd(self) -> float | None:
        """The most it costs at the on-demand price; ``None`` when the price is unknown."""
        if self.price is None:
            return None
        return self.price.usd_per_hour * self.instance_count * self.hours

    @property
    def spot_usd(self) -> float | None:
        """The same at a typical spot saving (see :data:`SPOT_SHARE`); ``None`` if unknown."""
        total = self.on_demand_usd
        return None if total is None else total * SPOT_SHARE

    @property
    def expected_usd(self) -> float | None:
        """What the expected hours cost on demand; ``None`` without a speed or a price."""
        if self.price is None or self.expected_hours is None:
            return None
        return self.price.usd_per_hour * self.instance_count * self.expected_hours

    @property
    def usd(self) -> float | None:
        """The figure that applies: spot when spot is used, else on demand."""
        return self.spot_usd if self.spot else self.on_demand_usd

    def __str__(self) -> str:
        count = f"{self.instance_count} x {self.instance_type}"
        if self.price is None:
            return (
                f"{self.what}: {count}: no price known ("
                + (
                    self.note
                    or "not in the AWS Price List API's answer nor in the "
                    "library's table; nothing is guessed"
                )
                + ")"
            )
        if self.what == "endpoint":
            return (
                f"endpoint: {count} at {self.price}: ${self.on_demand_usd:,.2f} per hour, "
                f"${self.on_demand_usd * 24 * 30:,.0f} per 30 days while it is up"  # type: ignore[operator]
                + (f"; {self.note}" if self.note else "")
            )
        spot = (
            f"; with spot about ${self.spot_usd:,.2f} (assuming {1 - SPOT_SHARE:.0%} off)"
            if self.spot
            else ""
        )
        return (
            f"{self.what}: {count} for at most {self.hours:,.2f} h at {self.price}: at most "
            f"${self.on_demand_usd:,.2f} on demand{spot}"
            + (f"; {self.note}" if self.note else "")
            + self._expected_text()
        )

    def _expected_text(self) -> str:
        if self.expected_hours is None:
            return ""
        hours = self.expected_hours
        span = f"{hours * 60:,.1f} min" if hours < 1 else f"{hours:,.2f} h"
        return f"; expected about {span} (${self.expected_usd:,.2f}) from {self.expected_basis}"


def estimate_for(
    spec: Any,
    price: Callable[[str, str], Price | None],
    expect: Callable[[TrainingSpec], Expected | None] | None = None,
) -> CostEstimate:
    """The cost estimate of a training, tuning, deploy or batch spec at ``price(type, use)``.

    ``expect(training_spec)`` gives the time a training job is expected to take,
    when a speed was measured for it; a tuning run expects that of every trial.
    """
    found = _bounded(spec, price)
    training = _trial_template(spec)
    timed = None if training is None or expect is None else expect(training)
    if training is None or timed is None:
        return found
    trials = spec.max_jobs if training is not spec else 1
    hours = min(timed.seconds / 3600, training.max_run / 3600) * trials
    basis = timed.basis if trials == 1 else f"{trials} trials x ({timed.basis})"
    return replace(found, expected_hours=min(hours, found.hours), expected_basis=basis)


def _trial_template(spec: Any) -> TrainingSpec | None:
    """The training job whose time a training or tuning spec's time is made of."""
    from sm_imgclf.contracts.tuning import TuningSpec

    if isinstance(spec, TuningSpec):
        return spec.trial_training()
    return spec if isinstance(spec, TrainingSpec) else None


def _bounded(spec: Any, price: Callable[[str, str], Price | None]) -> CostEstimate:
    """The estimate from the run-time bounds alone."""
    from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
    from sm_imgclf.contracts.tuning import TuningSpec

    if isinstance(spec, TuningSpec):
        if spec.in_one_job:
            return replace(
                _bounded(spec.one_job_training(), price),
                what="tuning",
                note=f"the whole search ({spec.max_jobs} trials) runs in one job",
            )
        trial = spec.trial_training()
        found = price(trial.instance_type, "training")
        training, trial_note = capped(trial, found)
        hours = training.max_run / 3600 * spec.max_jobs
        cap, note = tuning_runtime_cap(spec, found)
        if cap is not None:
            hours = min(hours, cap / 3600 * spec.max_parallel_jobs)
        notes = [
            f"{spec.max_jobs} trials, each at most {training.max_run / 3600:,.2f} h"
            + (
                " (the estimator's max_cost)"
                if trial_note and training.max_run < spec.training.max_run
                else ""
            ),
            note,
        ]
        if spec.shared_features:
            notes.append(
                "and first the features job, " + str(_bounded(spec.features_training(), price))
            )
        return CostEstimate(
            "tuning",
            training.instance_type,
            training.instance_count,
            hours,
            found,
            training.use_spot,
            "; ".join(n for n in notes if n),
        )
    if isinstance(spec, DeploySpec):
        if spec.serverless_memory_mb is not None:
            return CostEstimate(
                "endpoint",
                f"serverless {spec.serverless_memory_mb} MB",
                1,
                1.0,
                None,
                note="serverless endpoints bill per request-second and memory, not per hour",
            )
        return CostEstimate(
            "endpoint",
            spec.instance_type,
            spec.instance_count,
            1.0,
            price(spec.instance_type, "hosting"),
        )
    if isinstance(spec, BatchSpec):
        return CostEstimate(
            "batch transform",
            spec.instance_type,
            spec.instance_count,
            1.0,
            price(spec.instance_type, "transform"),
            note="per hour, until every image is scored",
        )
    found = price(spec.instance_type, "training")
    spec, note = capped(spec, found)
    return CostEstimate(
        "training",
        spec.instance_type,
        spec.instance_count,
        spec.max_run / 3600,
        found,
        spec.use_spot,
        note,
    )


def capped(spec: TrainingSpec, price: Price | None) -> tuple[TrainingSpec, str]:
    """``spec`` with ``max_run`` lowered to what ``max_cost`` buys, and a line saying so.

    The cap uses the on-demand price even with spot, since spot savings are not
    promised. A spec without ``max_cost`` is returned as it is, with no line.

    Raises:
        ConfigurationError: ``max_cost`` is set and no price is known, or it
            buys less than a minute.
    """
    if spec.max_cost is None:
        return spec, ""
    if price is None:
        raise bad_value(
            "max_cost",
            f"a known price for {spec.instance_type}",
            spec.max_cost,
            "No price is known for it here: bound the job with max_run= instead.",
        )
    rate = price.usd_per_hour * spec.instance_count
    if rate == 0:
        return spec, f"max_cost ${spec.max_cost:,.2f} noted; {price.source} costs nothing"
    seconds = int(spec.max_cost / rate * 3600)
    if seconds < 60:
        raise bad_value(
            "max_cost",
            f"at least ${rate / 60:.4f} (one minute of "
            f"{spec.instance_count} x {spec.instance_type} at {price})",
            spec.max_cost,
        )
    if seconds >= spec.max_run:
        return spec, (
            f"max_cost ${spec.max_cost:,.2f} allows {seconds / 3600:,.2f} h; "
            f"max_run ({spec.max_run / 3600:,.2f} h) is the tighter bound"
        )
    wait = None if spec.max_spot_wait is None else max(spec.max_spot_wait, seconds)
    return replace(spec, max_run=seconds, max_spot_wait=wait), (
        f"max_cost ${spec.max_cost:,.2f} caps the run at {seconds / 3600:,.2f} h"
    )


def tuning_runtime_cap(spec: TuningSpec, price: Price | None) -> tuple[int | None, str]:
    """Seconds a tuning run may last so that ``max_cost`` bounds its spend, and a line.

    At most ``max_parallel_jobs`` trials of ``instance_count`` instances run at
    once, so a run that lasts ``max_cost / (price x count x parallel)`` hours
    cannot spend more; SageMaker enforces it as the run's ``MaxRuntimeInSeconds``.
    """
    if spec.max_cost is None:
        return None, ""
    if price is None:
        raise bad_value(
            "max_cost",
            f"a known price for {spec.trial_training().instance_type}",
            spec.max_cost,
            "No price is known for it here: bound the trials "
            "with the estimator's max_run= and max_jobs= instead.",
        )
    rate = price.usd_per_hour * spec.training.instance_count * spec.max_parallel_jobs
    if rate == 0:
        return None, f"max_cost ${spec.max_cost:,.2f} noted; {price.source} costs nothing"
    seconds = int(spec.max_cost / rate * 3600)
    return seconds, (
        f"max_cost ${spec.max_cost:,.2f} stops the run after "
        f"{seconds / 3600:,.2f} h ({spec.max_parallel_jobs} trial(s) at once)"
    )


def budget_refusal(
    max_cost: float, usd_per_hour: float, trial_hours: float, spent_hours: float, running: int
) -> str | None:
    """Why one more trial would not fit ``max_cost``, or ``None`` when it fits.

    What ended trials spent, plus every running trial and the new one at their
    run-time bound (what they may still cost), must stay within the budget.
    """
    spent = spent_hours * usd_per_hour
    committed = running * trial_hours * usd_per_hour
    another = trial_hours * usd_per_hour
    if spent + committed + another <= max_cost * (1 + 1e-9):
        return None
    return (
        f"stopped for budget: ${spent:,.2f} spent and ${committed:,.2f} committed to "
        f"running trials; another trial (up to ${another:,.2f}) could pass max_cost "
        f"${max_cost:,.2f}"
    )
