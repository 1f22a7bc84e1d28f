"""The local backend: everything under one directory on this machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from sm_imgclf._params import bad_value
from sm_imgclf.backends import speeds
from sm_imgclf.backends.local import costs as local_costs
from sm_imgclf.backends.local import runner as local_runner
from sm_imgclf.backends.local import serving as local_serving
from sm_imgclf.backends.local.processes import alive
from sm_imgclf.backends.one_job import spec_file_search, trials, tuning_status
from sm_imgclf.contracts.costs import CostEstimate
from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
from sm_imgclf.contracts.resources import ENDPOINT, Resource
from sm_imgclf.contracts.status import JobState, JobStatus, TrialRecord, TuningStatus
from sm_imgclf.contracts.training import TrainingSpec
from sm_imgclf.contracts.tuning import TuningSpec
from sm_imgclf.errors import BackendError, ConfigurationError
from sm_imgclf.runtime.weights import WEIGHTS_CHANNEL, kind_of
from sm_imgclf.storage.local import LocalDirStore

_RESTARTABLE = frozenset({"Failed", "Stopped"})
ONE_JOB = "one-job.json"  # a tuning run that is one training job: its spec


class LocalBackend:
    """Stores data under ``root/store`` and runs jobs under ``root/jobs/<name>``.

    Args:
        root: The session directory.
        max_concurrency: Files copied at once.
        feature_store: Give jobs the feature store ``root/features``.
        price_per_hour: What an hour of this machine is worth, in US dollars, for
            rehearsing budgets: with it a tuning run's ``max_cost`` starts no trial
            that could pass the budget, as it would count on SageMaker.
    """

    name = "local"
    stop_on_interrupt = True
    min_poll_seconds = 0.0
    costly_job_starts = False
    shares_features_by_job = False

    def __init__(
        self,
        root: Path,
        *,
        max_concurrency: int = 4,
        feature_store: bool = True,
        price_per_hour: float = 0.0,
    ) -> None:
        self.root = root
        self.max_concurrency = max_concurrency
        self.feature_store = feature_store
        self.price_per_hour = price_per_hour

    def __repr__(self) -> str:
        return f"LocalBackend(root={str(self.root)!r})"

    @cached_property
    def store(self) -> LocalDirStore:
        """The directory store under ``root/store``."""
        return LocalDirStore(self.root / "store", max_concurrency=self.max_concurrency)

    def job_dir(self, name: str) -> Path:
        """The folder of job ``name``."""
        return self.root / "jobs" / name

    def training_request(self, spec: TrainingSpec) -> dict[str, Any]:
        """The command, channel folders and arguments the job will run with."""
        channels = {name: str(_local_path(name, uri)) for name, uri in spec.channels}
        if kind_of(spec.weights) == "s3":  # fetched into the job's folder when it starts
            channels[WEIGHTS_CHANNEL] = str(self.job_dir(spec.job_name) / WEIGHTS_CHANNEL)
        return {
            "job_name": spec.job_name,
            "command": [sys.executable, "-m", "sm_imgclf.runtime.job", *spec.argv()],
            "channels": channels,
            "hyperparameters": spec.job_arguments(),
            "source_dir": spec.source_dir,
            "feature_store": str(self.root / "features") if self.feature_store else None,
            "environment": dict(spec.environment),
        }

    def start_training(self, spec: TrainingSpec, *, epoch_gate: bool = False) -> None:
        """Start the job in its own process session; a failed or stopped one resumes.

        Args:
            spec: The job.
            epoch_gate: Make the job wait after each epoch until :meth:`continue_training`
                lets it go on (the local tuner judges every epoch this way).
        """
        request = self.training_request(spec) | {"epoch_gate": epoch_gate}
        if kind_of(spec.weights) == "s3":
            _fetch(spec.weights, Path(request["channels"][WEIGHTS_CHANNEL]))
        for name, path in request["channels"].items():
            if not Path(path).is_dir():
                raise bad_value(f"channel {name!r}", "an existing folder", path)
        folder = self.job_dir(spec.job_name)
        if (folder / local_runner.STATUS).exists():
            status = self.describe_training(spec.job_name).status
            if status not in _RESTARTABLE:
                raise BackendError(
                    f"A job named {spec.job_name!r} is already {status}. Choose another job_name.",
                    name=spec.job_name,
                )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / local_runner.SPEC).write_text(json.dumps(request, indent=2))
        (folder / "runner.pid").unlink(missing_ok=True)
        (folder / local_runner.STOP).unlink(missing_ok=True)
        (folder / local_runner.STATUS).unlink(missing_ok=True)
        shutil.rmtree(folder / local_runner.GATE, ignore_errors=True)  # verdicts of a past run
        local_runner.write_status(folder, status="InProgress")
        _spawn(folder, "sm_imgclf.backends.local.runner")

    def continue_training(self, name: str, epoch: int) -> None:
        """Let a job started with ``epoch_gate=True`` go on past ``epoch``."""
        gate = self.job_dir(name) / local_runner.GATE
        gate.mkdir(exist_ok=True)
        (gate / f"continue-{epoch}").touch()

    def describe_training(self, name: str) -> JobStatus:
        """Read ``status.json``; a runner that vanished without a verdict means Failed."""
        folder = self.job_dir(name)
        status = _read_status(
            folder,
            f"local training job named {name!r}",
            "The local job runner ended without a result (killed?). "
            "Run fit() again with this job_name to resume.",
        )
        model = folder / "output" / "model.tar.gz"
        return JobStatus(
            JobState(status["status"]),
            status.get("failure_reason"),
            model.as_uri()
            if status["status"] in ("Completed", "Stopped") and model.is_file()
            else None,
        )

    def training_log(self, name: str, cursor: Any) -> tuple[list[str], Any]:
        """Return complete lines appended to the job's log since ``cursor`` (a byte offset)."""
        path = self.job_dir(name) / local_runner.LOG
        offset = int(cursor or 0)
        if not path.exists():
            return [], offset
        with path.open("rb") as log:
            log.seek(offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        return complete.decode(errors="replace").splitlines(), offset + len(complete)

    def training_output(self, name: str, target: Path) -> Path:
        """The job's own ``output`` folder (nothing is copied)."""
        self.describe_training(name)
        return self.job_dir(name) / "output"

    def fetch_model(self, uri: str, target: Path) -> Path:
        """The package's own file: local packages are read where they are."""
        try:
            return local_serving.package_path(uri)
        except ConfigurationError as error:
            raise BackendError(f"No local model package at {uri}: {error}") from error

    def record_speed(self, spec: TrainingSpec, log: list[str], name: str) -> None:
        """Keep the speed in ``log`` of completed job ``name`` for later estimates."""
        speeds.record(self.name, spec, log, name)

    def stop_training(self, name: str) -> None:
        """Send the runner SIGTERM; it interrupts the job, which keeps its checkpoint."""
        if self.describe_training(name).status is JobState.IN_PROGRESS:
            folder = self.job_dir(name)
            local_runner.request_stop(folder, _runner_pid(folder))

    def tuning_dir(self, name: str) -> Path:
        """The folder of tuning run ``name``."""
        return self.root / "tuning" / name

    def tuning_request(self, spec: TuningSpec) -> dict[str, Any]:
        """The tuner command and the spec it reads (a search in one job: that job's request)."""
        if spec.in_one_job:
            return self.training_request(spec.one_job_training())
        self.training_request(spec.training)  # checks the channels' form
        folder = self.tuning_dir(spec.name)
        return {
            "name": spec.name,
            "spec": spec.to_dict(),
            "command": [sys.executable, "-m", "sm_imgclf.backends.local.tuner", str(folder)],
        }

    def start_tuning(self, spec: TuningSpec) -> None:
        """Start the tuner; a stopped or failed run of the same spec carries on."""
        if spec.in_one_job:
            folder = self.tuning_dir(spec.name)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ONE_JOB).write_text(json.dumps(spec.to_dict(), indent=2))
            self.start_training(spec.one_job_training())
            return
        request = self.tuning_request(spec)
        for name, uri in spec.training.channels:
            if not _local_path(name, uri).is_dir():
                raise bad_value(f"channel {name!r}", "an existing folder", uri)
        folder = self.tuning_dir(spec.name)
        if (folder / local_runner.SPEC).exists():
            self._check_restart(spec, folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / local_runner.SPEC).write_text(json.dumps(request["spec"], indent=2))
        # The tuner's own backend starts the trials: it must share features as this one does.
        (folder / local_runner.BACKEND_OPTIONS).write_text(
            json.dumps({"feature_store": self.feature_store, "price_per_hour": self.price_per_hour})
        )
        (folder / "runner.pid").unlink(missing_ok=True)
        (folder / local_runner.STOP).unlink(missing_ok=True)
        local_runner.write_status(
            folder,
            status="InProgress",
            failure_reason=None,
            accepts_stop=False,
            objective=spec.objective,
            direction=spec.direction,
            categorical=spec.categorical,
        )
        _spawn(folder, "sm_imgclf.backends.local.tuner")

    def _check_restart(self, spec: TuningSpec, folder: Path) -> None:
        status = self.describe_tuning(spec.name).status
        if status not in _RESTARTABLE:
            raise BackendError(
                f"A tuning run named {spec.name!r} is already {status}. Choose another name.",
                name=spec.name,
            )
        if json.loads((folder / "spec.json").read_text()) != json.loads(json.dumps(spec.to_dict())):
            raise BackendError(
                f"A tuning run named {spec.name!r} exists with other settings; "
                "only an identical run can carry on. Choose another name.",
                name=spec.name,
            )

    def describe_tuning(self, name: str) -> TuningStatus:
        """Read the tuner's ``status.json``; a tuner that vanished means Failed."""
        one_job = self.tuning_dir(name) / ONE_JOB
        if one_job.is_file():
            return tuning_status(
                name,
                self.describe_training(name),
                spec_file_search(one_job.read_text()),
                lambda: self.training_log(name, None)[0],
            )
        status = _read_status(
            self.tuning_dir(name),
            f"local tuning run named {name!r}",
            "The local tuner ended without a result (killed?). "
            "Run it again with this name to carry on.",
        )
        return TuningStatus(
            JobState(status["status"]),
            status.get("failure_reason"),
            status.get("best_job"),
            status["objective"],
            status["direction"],
            tuple(status.get("categorical", ())),
            status.get("stop_reason"),
        )

    def list_trials(self, name: str) -> list[TrialRecord]:
        """The trials so far, from the tuner's ``trials.json`` (or the one job's log)."""
        if (self.tuning_dir(name) / ONE_JOB).is_file():
            return trials(name, self.training_log(name, None)[0])
        self.describe_tuning(name)
        path = self.tuning_dir(name) / "trials.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        return [TrialRecord(**row) for row in rows]

    def stop_tuning(self, name: str) -> None:
        """Send the tuner SIGTERM; it stops its running trials, which keep their checkpoints."""
        if (self.tuning_dir(name) / ONE_JOB).is_file():
            self.stop_training(name)
            return
        if self.describe_tuning(name).status is JobState.IN_PROGRESS:
            folder = self.tuning_dir(name)
            local_runner.request_stop(folder, _runner_pid(folder))

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every local training job, newest first, with its status."""
        folders = sorted(
            (self.root / "jobs").glob("*/status.json"),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        return [
            {"name": p.parent.name, "status": self.describe_training(p.parent.name).status}
            for p in folders
        ]

    def list_endpoints(self) -> list[dict[str, Any]]:
        """Every local endpoint with its status."""
        return [
            {"name": p.parent.name, "status": local_serving.describe(p.parent)["status"]}
            for p in sorted((self.root / "endpoints").glob(f"*/{local_serving.STATE}"))
        ]

    def endpoint_dir(self, name: str) -> Path:
        """The folder of endpoint ``name``."""
        return self.root / "endpoints" / name

    def deploy(self, spec: DeploySpec) -> None:
        """Start a local server for ``spec.model_uri`` and wait until it is ready."""
        folder = self.endpoint_dir(spec.name)
        folder.mkdir(parents=True, exist_ok=True)
        local_serving.deploy(folder, spec)

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        """The endpoint's status, port and model."""
        return local_serving.describe(self.endpoint_dir(name))

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        """Send one request to the endpoint."""
        return local_serving.invoke(self.endpoint_dir(name), body, content_type, accept)

    def delete_endpoint(self, name: str) -> None:
        """Stop the server and remove its files."""
        local_serving.delete(self.endpoint_dir(name))

    def batch_predict(self, spec: BatchSpec) -> str:
        """Run the handler over a local folder; return the predictions file's URI."""
        from sm_imgclf._archive import safe_extract
        from sm_imgclf.runtime.serving.folder import predict_folder

        package = safe_extract(
            local_serving.package_path(spec.model_uri), self.root / "batch" / spec.name / "model"
        )
        output = predict_folder(
            package,
            _local_path("input", spec.input_uri),
            _local_path("output", spec.output_uri),
            top_k=spec.top_k,
        )
        return output.as_uri()

    def list_resources(self) -> list[Resource]:
        """Local endpoints serving and jobs running: they cost nothing but this machine."""
        return local_costs.resources(self)

    def remove_resource(self, resource: Resource) -> None:
        """Stop a local endpoint's server or a local job."""
        if resource.kind == ENDPOINT:
            self.delete_endpoint(resource.name)
        else:
            self.stop_training(resource.name)

    def estimate(self, spec: Any) -> CostEstimate:
        """Local work costs no AWS money; the estimate says so, with its time bound."""
        return local_costs.estimate(
            spec, self.price_per_hour, speeds.expecter(self.name, speeds.image_counter(self.store))
        )


def _spawn(folder: Path, module: str) -> None:
    """Run ``python -m module folder`` in its own session, so it outlives the caller."""
    runner = [sys.executable, "-m", module, str(folder)]
    with (folder / "runner.log").open("ab") as log:
        process = subprocess.Popen(
            runner, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    # A file of its own: status.json belongs to the runner from now on.
    (folder / "runner.pid").write_text(str(process.pid))


def _read_status(folder: Path, what: str, vanished: str) -> dict[str, Any]:
    """A runner's ``status.json``; one whose process died without a verdict has Failed."""
    try:
        status: dict[str, Any] = json.loads((folder / local_runner.STATUS).read_text())
    except FileNotFoundError:
        raise BackendError(f"No {what} under {folder.parent}.", name=folder.name) from None
    pid = _runner_pid(folder)
    if status["status"] in ("InProgress", "Stopping") and pid and not alive(pid):
        status |= {"status": "Failed", "failure_reason": vanished}
    return status


def _runner_pid(folder: Path) -> int | None:
    try:
        return int((folder / "runner.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _fetch(uri: str, folder: Path) -> None:
    """Download an ``s3://`` weights file once, with the caller's AWS credentials."""
    import boto3

    from sm_imgclf.storage.s3 import S3Store

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    target = folder / key.rsplit("/", 1)[-1]
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        S3Store(boto3.client("s3"), bucket).get_file(key, target)


def _local_path(name: str, uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(url2pathname(parts.path))
    if parts.scheme == "":
        return Path(uri).absolute()
    raise bad_value(
        f"channel {name!r}",
        "a file:// URI or a folder for the local backend",
        uri,
        "Upload the dataset with a LocalSession first.",
    )
