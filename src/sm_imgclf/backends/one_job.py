"""A tuning run that is one training job: its status and trials, read from the job.

Both backends start such a run as the training job
:meth:`~sm_imgclf.contracts.tuning.TuningSpec.one_job_training` describes,
named like the run, and answer ``describe_tuning`` and ``list_trials`` from
that job's status and log, so :class:`~sm_imgclf.TuningResult` reads it as it
reads any other run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from sm_imgclf.contracts.schema import Param
from sm_imgclf.contracts.search import best_trial, trial_name, trials_from_log
from sm_imgclf.contracts.space import Categorical
from sm_imgclf.contracts.status import JobState, JobStatus, TrialRecord, TuningStatus
from sm_imgclf.contracts.tuning import Search


def search_of(argument: str) -> Search:
    """The search a job argument carries (JSON-quoted or not)."""
    return Search.from_argument(Param("search", str, "").parse(argument))


def tuning_status(
    name: str, job: JobStatus, search: Search, lines: Callable[[], Iterable[str]]
) -> TuningStatus:
    """The run's status: the job's; its best trial is the one the job packaged.

    Args:
        name: The run, and its job.
        job: The job's status.
        search: The search it runs.
        lines: Reads the job's log; called only once the job has completed.
    """
    categorical = tuple(n for n, r in search.space if isinstance(r, Categorical))
    best = best_trial(lines()) if job.status is JobState.COMPLETED else None
    return TuningStatus(
        job.status,
        job.failure_reason,
        None if best is None else trial_name(name, best),
        search.objective,
        search.direction,
        categorical,
    )


def trials(name: str, lines: Iterable[str]) -> list[TrialRecord]:
    """The trials the job reported so far, named ``<job>/trial-<n>``."""
    return trials_from_log(lines, name)


def spec_file_search(text: str) -> Search:
    """The search of a run from the spec a local backend stored for it."""
    from sm_imgclf.contracts.tuning import TuningSpec

    return TuningSpec.from_dict(json.loads(text)).in_job_search()
