"""The frozen plan of a tuning run."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sm_imgclf._params import bad_value, check_choice, check_number, check_resource_name
from sm_imgclf.contracts.search import one_job_blockers, search_argument
from sm_imgclf.contracts.space import Categorical, Range, describe, from_description
from sm_imgclf.contracts.training import TrainingSpec, spec_from_dict, spec_to_dict


class Strategy(StrEnum):
    """How trials are chosen; the strings ``"bayesian"`` ... are accepted too.

    Attributes:
        BAYESIAN: Model the objective from finished trials (Optuna's TPE locally).
        RANDOM: Independent random draws.
        GRID: Every combination of categorical values.
        HYPERBAND: Random draws; poor trials stop early at epochs chosen by
            successive halving, so many more configurations fit the same budget.
    """

    BAYESIAN = "bayesian"
    RANDOM = "random"
    GRID = "grid"
    HYPERBAND = "hyperband"


@dataclass(frozen=True)
class TuningSpec:
    """Everything a backend needs to run one tuning run; built without any I/O.

    Attributes:
        name: The tuning run's name (at most 32 characters, as SageMaker requires).
        training: The training job every trial starts from; the trials change
            only the hyperparameters in :attr:`space`.
        space: Hyperparameter name to range, sorted by name.
        objective: The metric to optimise, such as ``"valid:accuracy"``.
        direction: ``"maximize"`` or ``"minimize"``.
        strategy: How trials are chosen.
        max_jobs: Trials in all.
        max_parallel_jobs: Trials running at once.
        early_stopping: ``"auto"`` stops trials whose objective falls behind the
            median of earlier trials at the same epoch; ``"off"`` never does.
            Hyperband always stops trials early by its own rule.
        min_epochs: Hyperband's smallest budget: the epochs every trial runs.
        seed: Seed of the search, so a run can be repeated.
        warm_start: Names of earlier tuning runs whose trials seed this one.
        warm_start_type: ``"identical_data"`` or ``"transfer_learning"``.
        in_one_job: Run the whole search inside one training job named
            :attr:`name`, on backbone features computed once (head-only searches;
            see :mod:`sm_imgclf.contracts.search`).
        max_cost: US dollars the whole run may cost at most; on SageMaker it
            bounds the run's wall time (see :func:`~sm_imgclf.contracts.costs.tuning_runtime_cap`).
        shared_features: One job per trial, but the backbone runs once: a first
            job (:meth:`features_training`) stores the features, and every trial
            reads them as its ``features`` channel (head-only searches, as for
            :attr:`in_one_job`).
        trial_instance_type: The instance type the trials run on when they read
            shared features (they train only a head); ``None``: the estimator's.
    """

    name: str
    training: TrainingSpec
    space: tuple[tuple[str, Range], ...]
    objective: str = "valid:accuracy"
    direction: str = "maximize"
    strategy: Strategy = Strategy.BAYESIAN
    max_jobs: int = 10
    max_parallel_jobs: int = 2
    early_stopping: str = "off"
    min_epochs: int = 1
    seed: int = 0
    warm_start: tuple[str, ...] = ()
    warm_start_type: str = "identical_data"
    in_one_job: bool = False
    max_cost: float | None = None
    shared_features: bool = False
    trial_instance_type: str | None = None

    def __post_init__(self) -> None:
        check_resource_name("name", self.name, max_length=32)
        object.__setattr__(
            self,
            "strategy",
            Strategy(check_choice("strategy", str(self.strategy), [s.value for s in Strategy])),
        )
        check_choice("direction", self.direction, ("maximize", "minimize"))
        check_choice("early_stopping", self.early_stopping, ("off", "auto"))
        check_choice(
            "warm_start_type", self.warm_start_type, ("identical_data", "transfer_learning")
        )
        check_number("max_jobs", self.max_jobs, low=1, high=10_000, integer=True)
        check_number(
            "max_parallel_jobs", self.max_parallel_jobs, low=1, high=self.max_jobs, integer=True
        )
        check_number("min_epochs", self.min_epochs, low=1, integer=True)
        if self.max_cost is not None:
            check_number("max_cost", self.max_cost, low=0.0, low_open=True)
        if self.in_one_job:
            self._check_one_job()
        if self.shared_features:
            self._check_shared()
        elif self.trial_instance_type is not None:
            raise bad_value(
                "trial_instance_type",
                "None unless the trials read shared features",
                self.trial_instance_type,
                "Trials that run the backbone themselves use the estimator's instance_type.",
            )

    def _check_shared(self) -> None:
        if self.in_one_job:
            raise bad_value(
                "shared_features",
                "False with in_one_job=True",
                True,
                "A search in one job computes its features once already.",
            )
        blockers = one_job_blockers(self.training, dict(self.space))
        if blockers:
            raise bad_value(
                "shared_features",
                "False for this search",
                True,
                "Trials can share the backbone's features only when each "
                "trains the head on the same features: " + "; ".join(blockers) + ".",
            )

    def _check_one_job(self) -> None:
        blockers = one_job_blockers(self.training, dict(self.space))
        if self.warm_start:
            blockers.append("warm_start needs one training job per trial")
        if blockers:
            raise bad_value(
                "in_one_job",
                "False for this search",
                True,
                "One job can run a search only when every trial trains the head "
                "on the same features: " + "; ".join(blockers) + ".",
            )

    @property
    def categorical(self) -> tuple[str, ...]:
        """The tuned names whose values are categories."""
        return tuple(name for name, value in self.space if isinstance(value, Categorical))

    @property
    def space_map(self) -> dict[str, Range]:
        """The search space as a dictionary."""
        return dict(self.space)

    def trial_job_name(self, number: int) -> str:
        """The name of the local training job of trial ``number``."""
        return f"{self.name}-{number:03d}"

    def trial_spec(self, number: int, values: dict[str, Any]) -> TrainingSpec:
        """The training spec of one trial: the template with ``values`` applied."""
        from dataclasses import replace

        return replace(
            self.training,
            job_name=self.trial_job_name(number),
            hyperparameters=self.training.hyperparameters.updated(**values),
        )

    def in_job_search(self) -> Search:
        """The search a one-job run carries out in-process."""
        return Search(
            self.space,
            self.objective,
            self.direction,
            self.strategy,
            self.max_jobs,
            self.early_stopping,
            self.min_epochs,
            self.seed,
        )

    def one_job_training(self) -> TrainingSpec:
        """The training job that runs this whole search in-process (named like the run)."""
        from dataclasses import replace

        # The run's budget is the one job's budget.
        cost = self.max_cost if self.max_cost is not None else self.training.max_cost
        return replace(
            self.training,
            job_name=self.name,
            max_cost=cost,
            search=self.in_job_search().to_argument(),
        )

    @property
    def features_job_name(self) -> str:
        """The name of the job that stores the features trials share."""
        return f"{self.name}-features"

    def features_training(self) -> TrainingSpec:
        """The job that computes the backbone's features once for every trial."""
        from dataclasses import replace

        return replace(self.training, job_name=self.features_job_name, features_only=True)

    def trial_training(self) -> TrainingSpec:
        """The training job every trial starts from, on the trials' instance type."""
        from dataclasses import replace

        if self.trial_instance_type is None:
            return self.training
        return replace(self.training, instance_type=self.trial_instance_type)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (read back by :meth:`from_dict`)."""
        return {
            **{
                name: getattr(self, name)
                for name in (
                    "name",
                    "objective",
                    "direction",
                    "max_jobs",
                    "max_parallel_jobs",
                    "early_stopping",
                    "min_epochs",
                    "seed",
                    "warm_start_type",
                    "in_one_job",
                    "max_cost",
                    "shared_features",
                    "trial_instance_type",
                )
            },
            "strategy": str(self.strategy),
            "warm_start": list(self.warm_start),
            "training": spec_to_dict(self.training),
            "space": {name: describe(value) for name, value in self.space},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningSpec:
        """Rebuild a spec written by :meth:`to_dict`."""
        values = dict(data)
        values["training"] = spec_from_dict(values["training"])
        values["space"] = tuple((k, from_description(v)) for k, v in values["space"].items())
        values["strategy"] = Strategy(values["strategy"])
        values["warm_start"] = tuple(values["warm_start"])
        return cls(**values)


@dataclass(frozen=True)
class Search:
    """The search a job runs in-process, as the job argument carries it.

    Attributes mean what they mean on :class:`~sm_imgclf.TuningSpec`; trials run
    one after another, so ``max_parallel_jobs`` is 1.
    """

    space: tuple[tuple[str, Range], ...]
    objective: str
    direction: str
    strategy: Strategy
    max_jobs: int
    early_stopping: str
    min_epochs: int
    seed: int
    max_parallel_jobs: int = 1

    @property
    def space_map(self) -> dict[str, Range]:
        """The search space as a dictionary."""
        return dict(self.space)

    def to_argument(self) -> str:
        """The job argument that carries this search (read by :meth:`from_argument`)."""
        settings = {
            name: getattr(self, name)
            for name in (
                "objective",
                "direction",
                "max_jobs",
                "early_stopping",
                "min_epochs",
                "seed",
            )
        }
        settings |= {
            "strategy": str(self.strategy),
            "space": {name: describe(value) for name, value in self.space},
        }
        return search_argument(settings)

    @classmethod
    def from_argument(cls, text: str) -> Search:
        """Read the JSON text of the job argument (already unquoted)."""
        data = json.loads(text)
        space = tuple((k, from_description(v)) for k, v in sorted(data.pop("space").items()))
        return cls(space=space, strategy=Strategy(data.pop("strategy")), **data)


def new_tuning_name(base: str) -> str:
    """Return ``<base>-<timestamp>-<random>`` within SageMaker's 32 characters."""
    stamp = time.strftime("%y%m%d%H%M%S", time.gmtime())
    base = re.sub(r"[^a-zA-Z0-9-]", "-", base).strip("-")[:12] or "tune"
    return f"{base}-{stamp}-{uuid.uuid4().hex[:4]}"
