"""TuningRun: search hyperparameters with many training jobs, locally or on SageMaker."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sm_imgclf._params import bad_value, check_choice, check_number
from sm_imgclf.contracts.metrics import METRIC_NAMES
from sm_imgclf.contracts.search import one_job_blockers
from sm_imgclf.contracts.space import Range, check_space, grid_size
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.contracts.tuning import Strategy, TuningSpec, new_tuning_name
from sm_imgclf.training.estimator import TransferLearningEstimator

if TYPE_CHECKING:
    from sm_imgclf.contracts.costs import CostEstimate
    from sm_imgclf.tuning.result import TuningResult

WARM_START_TYPES = ("identical_data", "transfer_learning")
#: Where trials that read shared features run unless told otherwise: a head on
#: stored features needs no GPU.
TRIAL_INSTANCE_TYPE = "ml.m5.xlarge"


class TuningRun:
    """Tunes an estimator's hyperparameters over a search space.

    The constructor checks everything and does no I/O; :meth:`plan` builds
    the frozen :class:`~sm_imgclf.contracts.tuning.TuningSpec`; :meth:`run` starts it.

    Args:
        estimator: The estimator whose jobs are the trials; its hyperparameters
            are the fixed values, the space overrides some of them per trial.
        space: Hyperparameter name to :class:`~sm_imgclf.Continuous`,
            :class:`~sm_imgclf.Integer` or :class:`~sm_imgclf.Categorical`.
        objective: A metric the job prints each epoch: ``valid:accuracy``,
            ``valid:loss``, ``train:accuracy`` or ``train:loss``.
        direction: ``"maximize"`` or ``"minimize"``; by default loss metrics are
            minimised and accuracies maximised.
        strategy: A :class:`~sm_imgclf.Strategy` or its name.
        max_jobs: Trials in all; 10 by default. A grid search runs every
            combination, as SageMaker's does: its default is the grid size, and a
            smaller number is refused.
        max_parallel_jobs: Trials at once; at most ``max_jobs``.
        early_stopping: ``"auto"`` stops trials that fall below the median of
            earlier trials at the same epoch; ``"off"`` lets all run out.
        min_epochs: Epochs every trial runs before it can be stopped early.
        seed: Seed of the search.
        warm_start: Earlier runs (results or names) whose trials inform this one.
        warm_start_type: ``"identical_data"`` or ``"transfer_learning"`` (data or
            space changed; SageMaker's distinction, the local tuner treats both alike).
        in_one_job: Run the whole search inside one training job, trials one
            after another on backbone features computed once. It applies when the
            estimator trains only the head without augmentation and every tuned
            name shapes only the head (learning rate, batch size, epochs,
            optimizer settings, weight decay, label smoothing, head width and
            dropout, class weighting, schedule). ``None`` (default) chooses it on
            SageMaker whenever it applies (one instance start and one backbone
            pass instead of one per trial); local sessions share features
            across trial jobs anyway. ``True`` insists (and says why it cannot);
            ``False`` keeps one training job per trial. :meth:`plan` says which
            (``TuningSpec.in_one_job``).
        max_cost: US dollars the whole run may cost at most. On SageMaker the
            run's wall time is capped so that ``max_parallel_jobs`` trials at the
            instance's on-demand price cannot spend more (SageMaker stops it
            then); :meth:`estimate` says to what. Locally it is only reported.
        share_features: With one job per trial on SageMaker, run the backbone
            once: a first job (``<name>-features``, on the estimator's instance
            type) stores the features, and every trial reads them as a channel
            and trains only its head. It applies where ``in_one_job`` would.
            ``None`` (default) chooses it on SageMaker whenever it applies and
            the search is not in one job; ``True`` insists (and says why it
            cannot); ``False`` lets every trial run the backbone. :meth:`run`
            then waits for the features job before it creates the tuning job,
            even with ``wait=False``. Local sessions share features across
            trials through their own store (``LocalSession(feature_store=)``),
            so they refuse ``True``.
        trial_instance_type: The instance type of trials that read shared
            features: they train a head on stored features, which a small CPU
            instance does well. Default :data:`TRIAL_INSTANCE_TYPE`.
    """

    def __init__(
        self,
        estimator: TransferLearningEstimator,
        space: Mapping[str, Range],
        *,
        objective: str = "valid:accuracy",
        direction: str | None = None,
        strategy: Strategy | str = Strategy.BAYESIAN,
        max_jobs: int | None = None,
        max_parallel_jobs: int = 2,
        early_stopping: str = "off",
        min_epochs: int = 1,
        seed: int = 0,
        warm_start: Sequence[TuningResult | str] = (),
        warm_start_type: str = "identical_data",
        in_one_job: bool | None = None,
        max_cost: float | None = None,
        share_features: bool | None = None,
        trial_instance_type: str | None = None,
    ) -> None:
        if not isinstance(estimator, TransferLearningEstimator):
            raise bad_value("estimator", "a TransferLearningEstimator", estimator)
        self.estimator = estimator
        self.space = check_space(space)
        self.objective = _check_objective(objective)
        self.direction = check_choice(
            "direction",
            direction or ("minimize" if objective.endswith(":loss") else "maximize"),
            ("maximize", "minimize"),
        )
        self.strategy = Strategy(check_choice("strategy", str(strategy), [*map(str, Strategy)]))
        self.max_jobs = self._max_jobs(max_jobs)
        check_number("max_parallel_jobs", max_parallel_jobs, low=1, high=100, integer=True)
        if max_parallel_jobs > self.max_jobs and self.strategy is not Strategy.GRID:
            raise bad_value(
                "max_parallel_jobs", f"at most max_jobs ({self.max_jobs})", max_parallel_jobs
            )
        self.max_parallel_jobs = max_parallel_jobs
        self.early_stopping = check_choice("early_stopping", early_stopping, ("off", "auto"))
        epochs = estimator.hyperparameters.epochs
        self.min_epochs = check_number("min_epochs", min_epochs, low=1, high=epochs, integer=True)
        self.seed = check_number("seed", seed, low=0, high=2**31 - 1, integer=True)
        self.warm_start = _parents(warm_start)
        self.warm_start_type = check_choice("warm_start_type", warm_start_type, WARM_START_TYPES)
        if in_one_job not in (None, True, False):
            raise bad_value("in_one_job", "None, True or False", in_one_job)
        self.in_one_job = in_one_job
        self.max_cost = (
            None if max_cost is None else check_number("max_cost", max_cost, low=0.0, low_open=True)
        )
        if share_features not in (None, True, False):
            raise bad_value("share_features", "None, True or False", share_features)
        self.share_features = share_features
        if trial_instance_type is not None and not (
            isinstance(trial_instance_type, str) and trial_instance_type.startswith("ml.")
        ):
            raise bad_value(
                "trial_instance_type",
                f"a SageMaker instance type such as {TRIAL_INSTANCE_TYPE!r}",
                trial_instance_type,
            )
        self.trial_instance_type = trial_instance_type
        self._check_strategy()

    def _max_jobs(self, max_jobs: int | None) -> int:
        asked = (
            None
            if max_jobs is None
            else int(check_number("max_jobs", max_jobs, low=1, high=750, integer=True))
        )
        if self.strategy is not Strategy.GRID:
            return 10 if asked is None else asked
        size = grid_size(self.space)
        if asked is not None and asked < size:
            raise bad_value(
                "max_jobs",
                f"at least the grid size ({size}) with strategy='grid'",
                max_jobs,
                "A grid search runs every combination (SageMaker refuses fewer); leave "
                "max_jobs out, drop values from the space, or use strategy='random'.",
            )
        return int(check_number("grid size", size, low=1, high=750, integer=True))

    def _check_strategy(self) -> None:
        if self.strategy is Strategy.GRID:
            self.max_parallel_jobs = min(self.max_parallel_jobs, self.max_jobs)
        if self.strategy is Strategy.HYPERBAND:
            if "epochs" in self.space:
                raise bad_value(
                    "space['epochs']",
                    "absent with strategy='hyperband'",
                    self.space["epochs"],
                    "Hyperband decides how many epochs "
                    "each trial gets, up to the estimator's epochs.",
                )
            if self.early_stopping != "off":
                raise bad_value(
                    "early_stopping",
                    "'off' with strategy='hyperband'",
                    self.early_stopping,
                    "Hyperband stops trials early itself.",
                )
            if self.estimator.hyperparameters.epochs < 2:
                raise bad_value(
                    "the estimator's epochs",
                    "at least 2 for hyperband",
                    self.estimator.hyperparameters.epochs,
                )

    def __repr__(self) -> str:
        return (
            f"TuningRun({self.estimator.model!r}, {sorted(self.space)}, "
            f"objective={self.objective!r}, strategy={str(self.strategy)!r}, "
            f"max_jobs={self.max_jobs}, max_parallel_jobs={self.max_parallel_jobs})"
        )

    def plan(self, channels: Mapping[str, str], *, name: str | None = None) -> TuningSpec:
        """Return the frozen spec of the run :meth:`run` would start (no I/O)."""
        split = self.objective.split(":")[0]
        if split != "train" and isinstance(channels, Mapping) and split not in channels:
            raise bad_value(
                "channels",
                f"a mapping with a {split!r} channel (the objective "
                f"{self.objective!r} is measured on it)",
                sorted(channels),
                "Split the dataset, or tune on a train:* metric.",
            )
        name = name or new_tuning_name(self.estimator.base_job_name)
        if len(name) > 32:
            raise bad_value("name", "at most 32 characters (SageMaker's limit)", name)
        training = self.estimator.plan(channels, name=name)
        one_job = self._one_job(training)
        shared = self._shared(training, one_job)
        return TuningSpec(
            name=name,
            training=training,
            space=tuple(sorted(self.space.items())),
            objective=self.objective,
            direction=self.direction,
            strategy=self.strategy,
            max_jobs=self.max_jobs,
            max_parallel_jobs=self.max_parallel_jobs,
            early_stopping=self.early_stopping,
            min_epochs=self.min_epochs,
            seed=self.seed,
            warm_start=self.warm_start,
            warm_start_type=self.warm_start_type,
            in_one_job=one_job,
            max_cost=self.max_cost,
            shared_features=shared,
            trial_instance_type=(self.trial_instance_type or TRIAL_INSTANCE_TYPE)
            if shared
            else self.trial_instance_type,
        )

    def _one_job(self, training: TrainingSpec) -> bool:
        if self.in_one_job is not None:
            return self.in_one_job  # the spec refuses True, saying why, where it cannot apply
        return (
            self.estimator.session.backend.costly_job_starts
            and not self.warm_start
            and not one_job_blockers(training, self.space)
        )

    def _shared(self, training: TrainingSpec, one_job: bool) -> bool:
        if not self.estimator.session.backend.shares_features_by_job:
            if self.share_features:
                raise bad_value(
                    "share_features",
                    "None or False on this session",
                    True,
                    "Its trials already share the backbone's features through "
                    "the session's feature store (LocalSession(feature_store="
                    "True), the default); no features job is needed.",
                )
            return False
        if self.share_features is not None:
            return self.share_features  # the spec refuses True, saying why, where it cannot
        return not one_job and not one_job_blockers(training, self.space)

    def dry_run(self, channels: Mapping[str, str], *, name: str | None = None) -> dict[str, Any]:
        """Return exactly what :meth:`run` would send to the backend, without sending it."""
        return self.estimator.session.backend.tuning_request(self.plan(channels, name=name))

    def estimate(self, channels: Mapping[str, str]) -> CostEstimate:
        """What the run may cost at most: every trial at its run-time bound, or ``max_cost``."""
        return self.estimator.session.estimate(self.plan(channels))

    def run(
        self,
        channels: Mapping[str, str],
        *,
        wait: bool = True,
        logs: bool = True,
        name: str | None = None,
    ) -> TuningResult:
        """Start the run and, by default, wait for it, printing each trial's outcome.

        Args:
            channels: Channel URIs by name, as ``upload()`` returned them.
            wait: Block until every trial has ended.
            logs: Print a line as each trial starts and ends.
            name: Name the run; running a stopped or failed local run again
                under its name carries on where it stopped.

        Raises:
            TuningFailedError: Every trial failed, or the objective was never printed.
        """
        from sm_imgclf.tuning.result import TuningResult

        spec = self.plan(channels, name=name)
        if logs and spec.max_cost is not None:
            print(f"budget: {self.estimator.session.estimate(spec)}", flush=True)
        if spec.shared_features:
            self._store_features(spec, logs=logs)
        spec, parent = self._tracked(spec)
        self.estimator.session.backend.start_tuning(spec)
        result = TuningResult(spec.name, self.estimator.session)
        if wait:
            try:
                result.wait(logs=logs)
            finally:
                if parent is not None:
                    self._end_parent(parent, result)
            self._remember_speed(spec, result)
        return result

    def _tracked(self, spec: TuningSpec) -> tuple[TuningSpec, Any]:
        """The spec whose trials log as children of a new parent run, when the session tracks."""
        from sm_imgclf.contracts.tracking import PARENT_ENV
        from sm_imgclf.training.tracking import start_parent

        space = {name: repr(value) for name, value in spec.space}
        parent = start_parent(self.estimator.session, spec.name, space)
        if parent is None:
            return spec, None
        environment = (*spec.training.environment, (PARENT_ENV, parent.run_id))
        return replace(spec, training=replace(spec.training, environment=environment)), parent

    @staticmethod
    def _end_parent(parent: Any, result: TuningResult) -> None:
        from sm_imgclf.errors import SmImgclfError
        from sm_imgclf.training.tracking import end_parent

        try:
            trials, best = result.trials, result.best.job_name
        except SmImgclfError:  # no trial completed: no best to name
            trials, best = result.trials, None
        end_parent(parent, trials, best)

    def _remember_speed(self, spec: TuningSpec, result: TuningResult) -> None:
        """Keep the speed of the best trial, so later estimates expect a time."""
        from sm_imgclf.errors import SmImgclfError
        from sm_imgclf.training.estimator import remember_speed

        if spec.in_one_job:
            return  # the trials' epochs are not the job's
        with contextlib.suppress(SmImgclfError):  # no completed trial: nothing measured
            remember_speed(self.estimator.session, spec.trial_training(), result.best.job)

    def _store_features(self, spec: TuningSpec, *, logs: bool) -> None:
        """Run the features job to its end (a job of that name that exists is adopted)."""
        from sm_imgclf.training.job import TrainingJob

        features = spec.features_training()
        print(
            f"features: job {features.job_name} runs the backbone once on "
            f"{features.instance_type}; then {spec.max_jobs} trials on "
            f"{spec.trial_instance_type} read its features and train only their heads",
            flush=True,
        )
        self.estimator.session.backend.start_training(features)
        TrainingJob(features.job_name, self.estimator.session).wait(logs=logs)


def _check_objective(objective: object) -> str:
    tunable = [m for m in METRIC_NAMES if not m.startswith("test:")]
    if isinstance(objective, str) and objective.startswith("test:"):
        raise bad_value(
            "objective",
            f"one of {tunable}",
            objective,
            "Tuning on the test split would leak it into model selection; "
            "tune on valid:* and keep test for the final evaluation.",
        )
    return check_choice("objective", objective, tunable)


def _parents(warm_start: Sequence[Any]) -> tuple[str, ...]:
    if isinstance(warm_start, str):
        warm_start = [warm_start]
    names = tuple(getattr(p, "name", p) for p in warm_start)
    if len(names) > 5 or not all(isinstance(n, str) and n for n in names):
        raise bad_value("warm_start", "up to 5 earlier tuning runs (results or names)", warm_start)
    return names
