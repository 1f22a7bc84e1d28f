"""SageMaker's answers about tuning runs and their trials, for Stubber."""

from __future__ import annotations

import datetime as dt


def summary(
    name: str, status: str, values: dict[str, str], objective: float | None, **extra: object
) -> dict:
    moment = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    item = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:1:x/{name}",
        "CreationTime": moment,
        "TrainingJobStatus": status,
        "TunedHyperParameters": values,
        "TrainingStartTime": moment,
        "TrainingEndTime": moment + dt.timedelta(minutes=12),
        **extra,
    }
    if objective is not None:
        item["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "MetricName": "valid:accuracy",
            "Value": objective,
        }
    return item


def training_job(name: str, status: str, epochs: int) -> dict:
    """A DescribeTrainingJob answer whose ``epoch`` metric ended at ``epochs``."""
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:1:x/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://b/jobs/{name}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": 0,
        "FinalMetricDataList": [
            {"MetricName": "valid:accuracy", "Value": 0.5, "Timestamp": 0},
            {"MetricName": "epoch", "Value": float(epochs), "Timestamp": 0},
        ],
    }


def describe(name: str, status: str, strategy: str = "Bayesian") -> dict:
    moment = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:1:tuning/{name}",
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "TrainingJobEarlyStoppingType": "Off",
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize",
                "MetricName": "valid:accuracy",
            },
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 2},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": moment,
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
        "BestTrainingJob": {
            "TrainingJobName": f"{name}-002-bbbb",
            "CreationTime": moment,
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {},
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x",
        },
    }
