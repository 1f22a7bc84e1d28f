"""The job's own MLflow run: parameters at the start, each epoch as it ends, the package at the end.

The job logs from a thread of its own, so training never waits for the
tracking server: a slow server delays only the log, and one that is gone
costs one warning, after which the job stops trying. At the end the job waits
at most :data:`CLOSE_SECONDS` for what is still queued.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

CLOSE_SECONDS = 60.0
# MLflow retries a refused request for minutes by default; a job must not wait that long.
_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class JobTracker:
    """One job's MLflow run, filled from a background thread.

    Args:
        uri: The tracking URI.
        experiment: The experiment's name.
        name: The run's name (the job's).
        parent: The parent run's id, for a tuning run's trial.
        log: Where the one warning goes.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        name: str,
        parent: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.uri, self.log = uri, log
        self.run_id: str | None = None
        self._broken = self._closed = False
        self._tasks: queue.Queue[Callable[[Any], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._send, name="mlflow", daemon=True)
        self._thread.start()
        self._tasks.put(lambda client: self._start(client, experiment, name, parent))

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], log: Callable[[str], None] = print
    ) -> JobTracker | None:
        """A tracker when the job was told where to log and is its job's first process."""
        from sm_imgclf.contracts.tracking import (
            DEFAULT_EXPERIMENT,
            EXPERIMENT_ENV,
            PARENT_ENV,
            RUN_NAME_ENV,
            URI_ENV,
        )

        uri = env.get(URI_ENV)
        if not uri or int(env.get("RANK", "0") or 0) != 0:
            return None
        name = env.get("TRAINING_JOB_NAME") or env.get(RUN_NAME_ENV) or "job"
        experiment = env.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        return cls(uri, experiment, name, env.get(PARENT_ENV), log)

    def params(self, values: Mapping[str, object], tags: Mapping[str, str]) -> None:
        """Log the job's parameters and tags."""
        from mlflow.entities import Param, RunTag

        params = [Param(k, str(v)[:6000]) for k, v in values.items()]
        labels = [RunTag(k, v) for k, v in tags.items()]
        self._queue(lambda c: c.log_batch(self.run_id, params=params, tags=labels))

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's metrics at step ``epoch`` (``train:loss`` as ``train/loss``)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        found = [
            Metric(key.replace(":", "/"), float(value), now, epoch)
            for key, value in metrics.items()
            if isinstance(value, int | float)
        ]
        self._queue(lambda c: c.log_batch(self.run_id, metrics=found))

    def artifacts(self, folder: Path, path: str) -> None:
        """Upload ``folder``'s files under ``path`` in the run's artifacts."""
        if folder.is_dir():
            self._queue(lambda c: c.log_artifacts(self.run_id, str(folder), path))

    def close(self, status: str) -> None:
        """End the run as ``FINISHED``, ``FAILED`` or ``KILLED``; wait a little for the queue."""
        if self._closed:
            return
        self._closed = True
        self._queue(lambda c: c.set_terminated(self.run_id, status))
        self._tasks.put(None)
        self._thread.join(CLOSE_SECONDS)
        if self._thread.is_alive():
            self.log(f"tracking: MLflow at {self.uri} is slow; the run's last entries may be lost")

    def _queue(self, task: Callable[[Any], None]) -> None:
        if not self._broken:
            self._tasks.put(task)

    def _send(self) -> None:
        for key, value in _HTTP.items():
            os.environ.setdefault(key, value)
        client = None
        while (task := self._tasks.get()) is not None:
            if self._broken:
                continue
            try:
                if client is None:
                    from mlflow.tracking import MlflowClient

                    client = MlflowClient(self.uri)
                task(client)
            except Exception as error:  # whatever the server or MLflow raised
                self._broken = True
                first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
                self.log(
                    f"tracking: MLflow at {self.uri} failed ({first}); the job goes on "
                    "without tracking"
                )

    def _start(self, client: Any, experiment: str, name: str, parent: str | None) -> None:
        experiment_id = experiment_id_of(client, experiment)
        tags = {"sm_imgclf.kind": "training"}
        if parent:
            tags["mlflow.parentRunId"] = parent
        self.run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        self.log(f"tracking: MLflow run {self.run_id} at {self.uri}")


def experiment_id_of(client: Any, name: str) -> str:
    """The id of the experiment ``name``, created when it does not exist yet."""
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id if found is not None else client.create_experiment(name))


def job_params(
    settings: Mapping[str, Any], hp: Any, channels: Mapping[str, Path]
) -> dict[str, str]:
    """What identifies a job: its typed hyperparameters, model, weights and data."""
    values = {f"hp.{k}": str(v) for k, v in hp.to_dict().items()}
    values |= {k: str(settings[k]) for k in ("model", "weights") if k in settings}
    values["trainable"] = ",".join(settings.get("trainable", ()))
    for name, folder in channels.items():
        manifest = folder / "manifest.json"
        if manifest.is_file():  # the data a run saw, whatever bucket or folder held it
            digest = hashlib.md5(manifest.read_bytes(), usedforsecurity=False).hexdigest()
            values[f"data.{name}.manifest_md5"] = digest
    return values
