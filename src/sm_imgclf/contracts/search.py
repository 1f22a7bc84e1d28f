"""A head-only search inside one training job: when it applies, and how its trials are reported.

When every tuned hyperparameter shapes only the head and the backbone is
frozen without augmentation, every trial trains on the same backbone features.
One job can then compute them once and run the whole search in-process,
instead of one job (and one instance start, one backbone pass) per trial. The
job reports each trial on one log line (:func:`trial_line`), which backends
read back as :class:`~sm_imgclf.contracts.status.TrialRecord` rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sm_imgclf.contracts.status import TrialRecord
from sm_imgclf.contracts.training import TrainingSpec

# Hyperparameters that change what the head learns but not the features it sees.
HEAD_PARAMS = frozenset(
    {
        "lr",
        "batch_size",
        "epochs",
        "optimizer",
        "momentum",
        "weight_decay",
        "eps",
        "lr_schedule",
        "lr_step_epochs",
        "lr_gamma",
        "warmup_epochs",
        "label_smoothing",
        "class_weighting",
        "early_stopping_patience",
        "head_hidden",
        "head_dropout",
    }
)
TRIAL_PREFIX = "trial "
# The channel through which tuning trials receive features a first job stored.
FEATURES_CHANNEL = "features"
# SageMaker charts this line's value per trial (the job's own epoch lines are the best's).
TRIAL_DEFINITION = {"Name": "trial:objective", "Regex": r"trial_objective=([-+0-9.eE]+)"}


def one_job_blockers(training: TrainingSpec, tuned: Iterable[str]) -> list[str]:
    """Why a search over ``tuned`` cannot run inside one job of ``training`` (empty: it can)."""
    found = []
    backbone = sorted(set(tuned) - HEAD_PARAMS)
    if backbone:
        found.append(f"{', '.join(backbone)} change the backbone's features")
    if training.trainable != ("head",):
        found.append(f"trainable={','.join(training.trainable)} trains more than the head")
    if training.hyperparameters.augmentation != "none":
        found.append(
            f"augmentation={training.hyperparameters.augmentation} changes the features every epoch"
        )
    if training.instance_count != 1:
        found.append("instance_count > 1")
    return found


def search_argument(settings: dict[str, Any]) -> str:
    """The job argument that carries a search: compact JSON, itself JSON-quoted.

    AWS's training toolkit decodes every hyperparameter that parses as JSON and
    passes an object on as ``k=v,k=v``; a quoted string arrives as the text inside.
    """
    return json.dumps(json.dumps(settings, sort_keys=True, separators=(",", ":")))


def trial_line(record: TrialRecord, number: int) -> str:
    """The log line reporting one finished trial."""
    data = {
        "number": number,
        "status": str(record.status),
        "hyperparameters": record.hyperparameters,
        "objective": record.objective,
        "epochs": record.epochs,
        "note": record.note,
        "failure_reason": record.failure_reason,
        "started": record.started,
        "ended": record.ended,
    }
    value = "nan" if record.objective is None else f"{record.objective:.6g}"
    return f"{TRIAL_PREFIX}{json.dumps(data, sort_keys=True)} trial_objective={value}"


def trial_name(job_name: str, number: int) -> str:
    """The name of trial ``number`` of the search inside ``job_name``."""
    return f"{job_name}/trial-{number:03d}"


def trials_from_log(lines: Iterable[str], job_name: str) -> list[TrialRecord]:
    """The trials a one-job search reported, named by :func:`trial_name`."""
    records = []
    for line in lines:
        if not line.startswith(TRIAL_PREFIX) or " trial_objective=" not in line:
            continue
        try:
            data = json.loads(line[len(TRIAL_PREFIX) : line.rindex(" trial_objective=")])
        except ValueError:
            continue  # a line cut short by a kill
        number = int(data.pop("number"))
        records.append(TrialRecord(job_name=trial_name(job_name, number), **data))
    return records


def best_trial(lines: Iterable[str]) -> int | None:
    """The number of the trial the job packaged, from its ``search: best trial N`` line."""
    for line in lines:
        if line.startswith("search: best trial "):
            return int(line.split()[3])
    return None
