"""A backend that keeps everything in memory, for tests of code built on sm-imgclf."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_imgclf.contracts.costs import CostEstimate, Price, estimate_for
from sm_imgclf.contracts.deploy import (
    PAYLOAD_LIMIT,
    SERVERLESS_PAYLOAD_LIMIT,
    BatchSpec,
    DeploySpec,
)
from sm_imgclf.contracts.resources import ENDPOINT, TRAINING, Resource
from sm_imgclf.contracts.status import JobState, JobStatus, TrialRecord, TuningStatus
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.contracts.tuning import TuningSpec
from sm_imgclf.errors import BackendError
from sm_imgclf.storage.memory import MemoryStore


@dataclass
class FakeJob:
    """A job the fake backend was asked to run, and the outcome a test scripted for it."""

    spec: TrainingSpec
    status: str = "InProgress"
    log: list[str] = field(default_factory=list)
    failure_reason: str | None = None
    model_uri: str | None = None


@dataclass
class FakeTuning:
    """A tuning run the fake backend was asked to start, and its scripted trials."""

    spec: TuningSpec
    status: str = "InProgress"
    trials: list[TrialRecord] = field(default_factory=list)
    failure_reason: str | None = None


class FakeBackend:
    """Records what it is asked to do; a test then scripts each job's outcome.

    Use it with ``sm_imgclf.Session(FakeBackend())`` to exercise a workflow
    without touching the disk, the network or a GPU, then assert on
    ``backend.store.objects`` and ``backend.jobs``, and end jobs with
    :meth:`complete` or :meth:`fail`.

    Args:
        name: The name of the in-memory store, shown in its ``memory://`` URIs.
    """

    name = "fake"
    stop_on_interrupt = True
    min_poll_seconds = 0.0
    costly_job_starts = False
    shares_features_by_job = False

    def __init__(self, name: str = "fake") -> None:
        self._store = MemoryStore(name)
        self.jobs: dict[str, FakeJob] = {}
        self.endpoints: dict[str, DeploySpec] = {}
        self.requests: list[tuple[str, bytes, str, str]] = []
        self.answers: list[bytes] = []
        self.batches: list[BatchSpec] = []
        self.tunings: dict[str, FakeTuning] = {}
        self.prices: dict[str, float] = {}

    @property
    def store(self) -> MemoryStore:
        """The in-memory store."""
        return self._store

    def training_request(self, spec: TrainingSpec) -> dict[str, Any]:
        """The spec's job arguments and channels."""
        return {
            "job_name": spec.job_name,
            "arguments": spec.job_arguments(),
            "channels": spec.channel_map,
        }

    def start_training(self, spec: TrainingSpec) -> None:
        """Record the job as in progress."""
        if spec.job_name in self.jobs:
            raise BackendError(f"A job named {spec.job_name!r} exists.", name=spec.job_name)
        self.jobs[spec.job_name] = FakeJob(spec)

    def complete(self, name: str, log: list[str] | None = None) -> None:
        """End a job successfully, with ``log`` as its output."""
        job = self._job(name)
        job.status, job.model_uri = "Completed", self.store.uri(f"jobs/{name}/model.tar.gz")
        job.log += log or []

    def fail(self, name: str, reason: str) -> None:
        """End a job as failed with ``reason``."""
        job = self._job(name)
        job.status, job.failure_reason = "Failed", reason

    def describe_training(self, name: str) -> JobStatus:
        """The scripted status."""
        job = self._job(name)
        return JobStatus(JobState(job.status), job.failure_reason, job.model_uri)

    def training_log(self, name: str, cursor: Any) -> tuple[list[str], Any]:
        """Lines after ``cursor`` (an index)."""
        start = int(cursor or 0)
        lines = self._job(name).log[start:]
        return lines, start + len(lines)

    def training_output(self, name: str, target: Path) -> Path:
        """The fake runs nothing, so no job has output."""
        self._job(name)
        raise BackendError(f"Fake job {name!r} has no output data.", name=name)

    def fetch_model(self, uri: str, target: Path) -> Path:
        """Write the package stored under ``uri`` in the memory store into ``target``."""
        prefix = self._store.uri("")
        key = uri.removeprefix(prefix).lstrip("/")
        if not uri.startswith(prefix) or key not in self._store.objects:
            raise BackendError(f"No fake model package at {uri!r}.")
        target.mkdir(parents=True, exist_ok=True)
        path = target / "model.tar.gz"
        path.write_bytes(self._store.objects[key])
        return path

    def record_speed(self, spec: TrainingSpec, log: list[str], name: str) -> None:
        """Keep the speed in ``log`` of completed job ``name`` for later estimates."""
        from sm_imgclf.backends import speeds

        speeds.record(self.name, spec, log, name)

    def stop_training(self, name: str) -> None:
        """Mark the job stopped, unless it already ended."""
        job = self._job(name)
        if not JobState(job.status).terminal:
            job.status = "Stopped"

    def tuning_request(self, spec: TuningSpec) -> dict[str, Any]:
        """The spec as a dictionary."""
        return spec.to_dict()

    def start_tuning(self, spec: TuningSpec) -> None:
        """Record the run as in progress; :meth:`finish_tuning` scripts its trials."""
        if spec.name in self.tunings:
            raise BackendError(f"A tuning run named {spec.name!r} exists.", name=spec.name)
        self.tunings[spec.name] = FakeTuning(spec)

    def finish_tuning(
        self, name: str, trials: list[TrialRecord], *, failure_reason: str | None = None
    ) -> None:
        """End a run with ``trials`` (failed if ``failure_reason`` is given)."""
        tuning = self._tuning(name)
        tuning.trials = list(trials)
        tuning.status = "Failed" if failure_reason else "Completed"
        tuning.failure_reason = failure_reason

    def describe_tuning(self, name: str) -> TuningStatus:
        """The scripted status."""
        tuning = self._tuning(name)
        return TuningStatus(
            JobState(tuning.status),
            tuning.failure_reason,
            None,
            tuning.spec.objective,
            tuning.spec.direction,
            tuning.spec.categorical,
        )

    def list_trials(self, name: str) -> list[TrialRecord]:
        """The scripted trials."""
        return list(self._tuning(name).trials)

    def stop_tuning(self, name: str) -> None:
        """Mark the run stopped, unless it already ended."""
        tuning = self._tuning(name)
        if not JobState(tuning.status).terminal:
            tuning.status = "Stopped"

    def _tuning(self, name: str) -> FakeTuning:
        if name not in self.tunings:
            raise BackendError(f"No fake tuning run named {name!r}.", name=name)
        return self.tunings[name]

    def list_jobs(self) -> list[dict[str, Any]]:
        """The recorded jobs with their scripted status."""
        return [{"name": name, "status": job.status} for name, job in self.jobs.items()]

    def list_endpoints(self) -> list[dict[str, Any]]:
        """The recorded endpoints."""
        return [{"name": name, "status": "InService"} for name in self.endpoints]

    def list_resources(self) -> list[Resource]:
        """The recorded endpoints and the jobs not yet ended; no prices."""
        endpoints = [
            Resource(
                ENDPOINT,
                name,
                "InService",
                None,
                spec.instance_type,
                spec.instance_count,
                spec.tags,
                True,
            )
            for name, spec in self.endpoints.items()
        ]
        return endpoints + [
            Resource(
                TRAINING,
                name,
                job.status,
                None,
                job.spec.instance_type,
                job.spec.instance_count,
                job.spec.tags,
                True,
            )
            for name, job in self.jobs.items()
            if not JobState(job.status).terminal
        ]

    def remove_resource(self, resource: Resource) -> None:
        """Forget the endpoint or stop the job."""
        if resource.kind == ENDPOINT:
            self.delete_endpoint(resource.name)
        else:
            self.stop_training(resource.name)

    def estimate(self, spec: Any) -> CostEstimate:
        """An estimate with :attr:`prices` (US dollars per hour by instance type), if set."""

        def price(instance_type: str, use: str) -> Price | None:
            usd = self.prices.get(instance_type)
            return (
                None
                if usd is None
                else Price(instance_type, use, "fake", usd, "injected", "2000-01-01")
            )

        return estimate_for(spec, price)

    def deploy(self, spec: DeploySpec) -> None:
        """Record the endpoint; :attr:`answers` scripts what it returns."""
        self.endpoints[spec.name] = spec

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        """``InService`` for a recorded endpoint."""
        if name not in self.endpoints:
            raise BackendError(f"No fake endpoint named {name!r}.", name=name)
        spec = self.endpoints[name]
        limit = SERVERLESS_PAYLOAD_LIMIT if spec.serverless_memory_mb else PAYLOAD_LIMIT
        return {"status": "InService", "model_uri": spec.model_uri, "max_payload_bytes": limit}

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        """Record the request and return the next scripted answer."""
        self.describe_endpoint(name)
        self.requests.append((name, body, content_type, accept))
        if not self.answers:
            raise BackendError("No scripted answer left; append bytes to FakeBackend.answers.")
        return self.answers.pop(0)

    def delete_endpoint(self, name: str) -> None:
        """Forget the endpoint."""
        self.endpoints.pop(name, None)

    def batch_predict(self, spec: BatchSpec) -> str:
        """Record the batch job and return its output URI."""
        self.batches.append(spec)
        return spec.output_uri

    def _job(self, name: str) -> FakeJob:
        if name not in self.jobs:
            raise BackendError(f"No fake training job named {name!r}.", name=name)
        return self.jobs[name]
