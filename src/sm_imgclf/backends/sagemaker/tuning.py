"""Building SageMaker tuning requests and reading its trials: pure functions, no network."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sm_imgclf.contracts.hyperparameters import BY_NAME
from sm_imgclf.contracts.metrics import REPORT_BEST_ENV
from sm_imgclf.contracts.space import Categorical, Integer, Range
from sm_imgclf.contracts.status import TrialRecord, TrialState
from sm_imgclf.contracts.tuning import Strategy, TuningSpec

_SCALES = {"linear": "Linear", "log": "Logarithmic", "reverse_log": "ReverseLogarithmic"}
_STRATEGIES = {
    Strategy.BAYESIAN: "Bayesian",
    Strategy.RANDOM: "Random",
    Strategy.GRID: "Grid",
    Strategy.HYPERBAND: "Hyperband",
}
_WARM = {"identical_data": "IdenticalDataAndAlgorithm", "transfer_learning": "TransferLearning"}
# CreateTrainingJob fields that a tuning job's TrainingJobDefinition takes as they are.
_SHARED = (
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableManagedSpotTraining",
    "Environment",
)


def tuning_request(spec: TuningSpec, training: dict[str, Any]) -> dict[str, Any]:
    """Return the ``CreateHyperParameterTuningJob`` request.

    Args:
        spec: The tuning run.
        training: The ``CreateTrainingJob`` request the estimator builds for
            ``spec.training``; its definition is reused unchanged, less the
            tuned hyperparameters and the per-job checkpoint location.
    """
    definition = {key: training[key] for key in _SHARED if key in training}
    definition["StaticHyperParameters"] = {
        k: v for k, v in training["HyperParameters"].items() if k not in spec.space_map
    }
    if spec.training.use_spot:
        # Every trial would share one checkpoint prefix; the job keeps its own subfolder.
        definition["CheckpointConfig"] = {
            "S3Uri": training["CheckpointConfig"]["S3Uri"].rsplit("/jobs/", 1)[0]
            + f"/tuning/{spec.name}/checkpoints",
            "LocalPath": training["CheckpointConfig"]["LocalPath"],
        }
        definition["Environment"] = definition.get("Environment", {}) | {
            "SM_IMGCLF_CHECKPOINT_PER_JOB": "1"
        }
    config: dict[str, Any] = {
        "Strategy": _STRATEGIES[spec.strategy],
        "HyperParameterTuningJobObjective": {
            "Type": "Maximize" if spec.direction == "maximize" else "Minimize",
            "MetricName": spec.objective,
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": spec.max_jobs,
            "MaxParallelTrainingJobs": spec.max_parallel_jobs,
        },
        "ParameterRanges": parameter_ranges(spec.space_map),
        "TrainingJobEarlyStoppingType": "Auto" if spec.early_stopping == "auto" else "Off",
        "RandomSeed": spec.seed,
    }
    if spec.strategy is Strategy.HYPERBAND:
        config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {
                "MinResource": spec.min_epochs,
                "MaxResource": spec.training.hyperparameters.epochs,
            }
        }
    if not stops_early(config):
        # SageMaker ranks trials by the objective's last report: make it the best epoch's.
        definition["Environment"] = definition.get("Environment", {}) | {REPORT_BEST_ENV: "1"}
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": spec.name,
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "Tags": training.get("Tags", []),
    }
    if spec.warm_start:
        request["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [
                {"HyperParameterTuningJobName": name} for name in spec.warm_start
            ],
            "WarmStartType": _WARM[spec.warm_start_type],
        }
    return request


def hyperparameter_names(definition: dict[str, Any], config: dict[str, Any]) -> set[str]:
    """The static and tuned hyperparameters of a tuning job's trials."""
    ranges = config.get("ParameterRanges", {}).values()
    return set(definition.get("StaticHyperParameters", {})) | {r["Name"] for k in ranges for r in k}


def warm_start_problems(request: dict[str, Any], parents: dict[str, dict[str, Any]]) -> list[str]:
    """Why a warm start would be refused: its hyperparameter count differs from a parent's.

    AWS: "the total number of static plus tunable hyperparameters must remain
    the same as it is in all parent jobs". ``parents`` holds each parent's
    ``DescribeHyperParameterTuningJob`` answer.
    """
    ours = hyperparameter_names(
        request["TrainingJobDefinition"], request["HyperParameterTuningJobConfig"]
    )
    found = []
    for name, answer in parents.items():
        theirs = hyperparameter_names(
            answer.get("TrainingJobDefinition", {}), answer["HyperParameterTuningJobConfig"]
        )
        if len(theirs) != len(ours):
            found.append(
                f"warm_start: parent {name!r} has {len(theirs)} static and tuned "
                f"hyperparameters, this run {len(ours)}; SageMaker needs the same count "
                f"(only in the parent: {sorted(theirs - ours) or 'none'}; only here: "
                f"{sorted(ours - theirs) or 'none'}). Tune the same hyperparameters on the "
                "same kind of instance, or start without warm_start."
            )
    return found


def parameter_ranges(space: dict[str, Range]) -> dict[str, list[dict[str, Any]]]:
    """The typed ranges in SageMaker's form: every value a string the job parses back."""
    ranges: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for name, value in sorted(space.items()):
        param = BY_NAME[name]
        if isinstance(value, Categorical):
            ranges["CategoricalParameterRanges"].append(
                {"Name": name, "Values": [param.format(v) for v in value.values]}
            )
            continue
        kind = (
            "IntegerParameterRanges" if isinstance(value, Integer) else "ContinuousParameterRanges"
        )
        ranges[kind].append(
            {
                "Name": name,
                "MinValue": param.format(value.min),
                "MaxValue": param.format(value.max),
                "ScalingType": _SCALES[value.scale],
            }
        )
    return {kind: items for kind, items in ranges.items() if items}


def trial_record(summary: dict[str, Any], early_stopping: bool) -> TrialRecord:
    """Read one ``HyperParameterTrainingJobSummary``.

    SageMaker reports a trial its early stopping ended as ``Stopped``; when the
    run stops trials early (Auto or Hyperband) that is recorded as ``pruned``.
    """
    status = summary["TrainingJobStatus"].lower()
    if status == "stopped" and early_stopping:
        status = "pruned"
    if status in ("inprogress", "stopping"):
        status = "running"
    metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return TrialRecord(
        job_name=summary["TrainingJobName"],
        status=status,
        hyperparameters=dict(summary.get("TunedHyperParameters", {})),
        objective=metric.get("Value"),
        started=_seconds(summary.get("TrainingStartTime")),
        ended=_seconds(summary.get("TrainingEndTime")),
        failure_reason=summary.get("FailureReason"),
    )


def settled(
    record: TrialRecord, final: dict[str, float], objective: str, max_resource: int | None
) -> TrialRecord:
    """An ended trial with its epochs and its best epoch's objective.

    ``final`` is the trial's ``FinalMetricDataList``. SageMaker reads the
    objective's last report, the last epoch's, where the package holds the best
    epoch: the trial is ranked by its ``best:`` metric when it printed one.
    Hyperband stops every trial that reaches ``MaxResource`` epochs ("Once a job
    reaches the MaxResource value, it is stopped"): the status alone cannot tell
    that trial from one it pruned, but the epochs it trained can.
    """
    epochs = int(final["epoch"]) if "epoch" in final else None
    best = final.get(f"best:{objective}")
    record = replace(record, epochs=epochs, objective=record.objective if best is None else best)
    if record.status == "pruned" and max_resource and epochs is not None and epochs >= max_resource:
        return replace(record, status=TrialState.COMPLETED, note=f"trained all {epochs} epochs")
    return record


def stops_early(config: dict[str, Any]) -> bool:
    """Whether SageMaker stops a run's trials early, judging each by its reports so far.

    ``config`` is the run's ``HyperParameterTuningJobConfig``.
    """
    return (
        config.get("TrainingJobEarlyStoppingType") == "Auto"
        or config.get("Strategy") == "Hyperband"
    )


def ranking(config: dict[str, Any], objective: str) -> str:
    """How the best trial of a run with ``config`` is picked: by the best epoch's value."""
    if stops_early(config):
        return (
            f"each trial's best epoch (its best:{objective} metric); SageMaker's own "
            "BestTrainingJob ranks by the last epoch's report, which its early stopping reads"
        )
    return (
        f"each trial's best epoch (its best:{objective} metric, also its last {objective} "
        "report, so SageMaker's BestTrainingJob agrees)"
    )


def _seconds(moment: Any) -> float | None:
    return None if moment is None else float(moment.timestamp())


def stop_reason(answer: dict[str, Any]) -> str | None:
    """Why an ended run started fewer trials than it could: its wall-time limit.

    ``max_cost`` becomes the run's ``MaxRuntimeInSeconds``; SageMaker reports the
    time the run consumed, so a run that used it all before starting every
    trial ended on that limit.
    """
    if answer.get("HyperParameterTuningJobStatus") not in ("Completed", "Stopped"):
        return None
    limits = answer["HyperParameterTuningJobConfig"].get("ResourceLimits", {})
    cap = limits.get("MaxRuntimeInSeconds")
    used = answer.get("ConsumedResources", {}).get("RuntimeInSeconds")
    started = sum(answer.get("TrainingJobStatusCounters", {}).values())
    if not cap or used is None or used < cap or started >= limits["MaxNumberOfTrainingJobs"]:
        return None
    return (
        f"stopped at the run's wall-time limit: {used:,} s of {cap:,} s "
        f"(MaxRuntimeInSeconds, which max_cost sets); {started} of "
        f"{limits['MaxNumberOfTrainingJobs']} trials started"
    )
