"""TrainingJob: a handle on a running or finished training job, whatever the backend."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from sm_imgclf._pacing import Pacing
from sm_imgclf._params import bad_value
from sm_imgclf.contracts.deploy import DEFAULT_TOP_K
from sm_imgclf.contracts.metrics import metric_rows
from sm_imgclf.contracts.status import TERMINAL, JobState, JobStatus
from sm_imgclf.contracts.training import new_job_name
from sm_imgclf.errors import BackendError, TrainingJobFailedError

if TYPE_CHECKING:
    from sm_imgclf.contracts.deploy import DeployOptions, DeploySpec
    from sm_imgclf.serving.client import EndpointClient
    from sm_imgclf.session import Session
    from sm_imgclf.training.registry import RegisteredVersion


class TrainingJob:
    """A training job; get one from ``estimator.fit()`` or :meth:`attach`.

    Args:
        name: The job name.
        session: The session whose backend runs it.
    """

    def __init__(self, name: str, session: Session) -> None:
        self.name = name
        self.session = session
        self._log: list[str] = []
        self._cursor: Any = None

    def __repr__(self) -> str:
        return f"TrainingJob({self.name!r}, session={self.session!r})"

    @classmethod
    def attach(cls, name: str, session: Session) -> TrainingJob:
        """Return a handle on an existing job (raises if the backend does not know it)."""
        job = cls(name, session)
        job.describe()
        return job

    def describe(self) -> JobStatus:
        """Ask the backend for the job's current status."""
        return self.session.backend.describe_training(self.name)

    @property
    def status(self) -> str:
        """The current status."""
        return self.describe().status

    @property
    def failure_reason(self) -> str | None:
        """Why the job failed, if it did."""
        return self.describe().failure_reason

    @property
    def model_uri(self) -> str | None:
        """The model package URI once the job completed."""
        return self.describe().model_uri

    def logs(self) -> list[str]:
        """Return every log line so far."""
        self._pull()
        return list(self._log)

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Per-epoch metrics parsed from the log, then one final row.

        The last report of each epoch wins (a resumed job repeats none). The
        final row, ``epoch`` ``None``, holds the best epoch's metrics (those of
        the packaged model) and the test metrics.
        """
        return metric_rows(self.logs())

    def wait(
        self,
        *,
        logs: bool = True,
        poll: float = 1.0,
        out: TextIO | None = None,
        stop_on_interrupt: bool | None = None,
    ) -> JobStatus:
        """Block until the job ends, streaming its log.

        Ctrl-C stops a local job cleanly (its checkpoint is kept). A SageMaker
        job keeps running: the waiting ends and says how to re-attach or stop it.

        Args:
            logs: Print the job's log as it grows.
            poll: Seconds between looks at the job (on SageMaker at least 5, and
                longer while nothing changes).
            out: Where to print (standard output by default).
            stop_on_interrupt: Stop the job on Ctrl-C; ``None`` means the
                backend's default (``True`` locally, ``False`` on SageMaker).

        Raises:
            TrainingJobFailedError: The job failed.
        """
        out = out or sys.stdout
        pace = Pacing(poll, self.session.backend.min_poll_seconds)
        previous = None
        try:
            while True:
                status = self.describe()
                lines = self._pull() if logs else []
                for line in lines:
                    print(line, file=out, flush=True)
                if status.status in TERMINAL:
                    break
                time.sleep(pace.next(changed=bool(lines) or status != previous))
                previous = status
        except KeyboardInterrupt:
            self._interrupted(out, stop_on_interrupt)
            raise
        if logs:
            for line in self._pull():
                print(line, file=out, flush=True)
        if status.status is JobState.FAILED:
            raise TrainingJobFailedError(self.name, status.failure_reason)
        return status

    def register(self, name: str) -> RegisteredVersion:
        """Add this job's package to MLflow's model registry as a new version of ``name``.

        The job must have run with tracking on (see :doc:`/tracking`); deploy the
        version later with :func:`~sm_imgclf.deploy_registered`.

        Returns:
            The new version (``str()`` gives ``name:version``).
        """
        from sm_imgclf.training.registry import register

        return register(self, name)

    def deploy(
        self,
        name: str | None = None,
        *,
        options: DeployOptions | None = None,
        delete_after: str | None = None,
    ) -> EndpointClient:
        """Serve this job's model package and return a client for it.

        Args:
            name: Name of the endpoint (defaults to the job name).
            options: Where and how it serves (instances or serverless, batching,
                answers, the forward path ...): a :class:`~sm_imgclf.DeployOptions`.
            delete_after: Delete the endpoint this long after it is created
                (``"90m"``, ``"4h"``, ``"2d"``), on either backend.

        Returns:
            A client that deletes the endpoint when used as a context manager.
        """
        from sm_imgclf.serving.client import EndpointClient

        spec = self.deploy_spec(name, options=options, delete_after=delete_after)
        self.session.backend.deploy(spec)
        return EndpointClient(spec.name, self.session, owned=True)

    def deploy_spec(
        self,
        name: str | None = None,
        *,
        options: DeployOptions | None = None,
        delete_after: str | None = None,
    ) -> DeploySpec:
        """The frozen plan :meth:`deploy` would hand the backend (no I/O but the job's status).

        Raises:
            BackendError: The job has no model package (yet).
        """
        from sm_imgclf.contracts.deploy import DeployOptions

        model_uri = self.model_uri
        if model_uri is None:
            raise BackendError(
                f"Job {self.name!r} has no model package (status {self.status}).", name=self.name
            )
        chosen = options if options is not None else DeployOptions()
        if not isinstance(chosen, DeployOptions):
            raise bad_value("options", "a DeployOptions", chosen)
        return chosen.spec(
            name or self.name, model_uri, role=self.session.role, delete_after=delete_after
        )

    def batch_predict(
        self,
        input_uri: str,
        output_uri: str,
        *,
        name: str | None = None,
        top_k: int = DEFAULT_TOP_K,
        instance_type: str = "ml.m5.xlarge",
        instance_count: int = 1,
        image_uri: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Score every image under ``input_uri`` offline; return the predictions' URI.

        Locally the handler runs over the folder and writes ``predictions.jsonl``;
        on SageMaker a batch transform job writes one ``.out`` file per image.

        Args:
            input_uri: A folder (``file://`` or a path) or an S3 prefix of images.
            output_uri: Where the predictions go.
            name: The transform job's name (a new one each call by default:
                SageMaker never reuses one).
            top_k: Classes per image.
            instance_type: SageMaker instance type of the transform.
            instance_count: SageMaker instances of the transform.
            image_uri: The inference image (looked up when ``None``).
            tags: Tags for the transform job and its model.
        """
        from sm_imgclf.contracts.deploy import BatchSpec

        model_uri = self.model_uri
        if model_uri is None:
            raise BackendError(
                f"Job {self.name!r} has no model package (status {self.status}).", name=self.name
            )
        spec = BatchSpec(
            name or new_job_name(f"{self.name[:20]}-batch"),
            model_uri,
            input_uri,
            output_uri,
            instance_type=instance_type,
            instance_count=instance_count,
            top_k=top_k,
            image_uri=image_uri,
            role=self.session.role,
            tags=tuple((tags or {}).items()),
        )
        return self.session.backend.batch_predict(spec)

    def _interrupted(self, out: TextIO, stop: bool | None) -> None:
        backend = self.session.backend
        if stop if stop is not None else backend.stop_on_interrupt:
            print(f"stopping {self.name} ...", file=out, flush=True)
            self.stop()
            return
        print(
            f"stopped waiting; {self.name} keeps running (and billing). Re-attach with "
            f"smi.TrainingJob.attach({self.name!r}, session), or stop it with .stop().",
            file=out,
            flush=True,
        )

    def stop(self) -> None:
        """Ask the backend to stop the job (checkpoints are kept)."""
        self.session.backend.stop_training(self.name)

    def _pull(self) -> list[str]:
        lines, self._cursor = self.session.backend.training_log(self.name, self._cursor)
        self._log.extend(lines)
        return list(lines)
