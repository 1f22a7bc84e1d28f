"""Jobs and tuning runs logged to a real MLflow tracking server (nox -s tracking).

The server is ``mlflow server`` with a SQLite store on 127.0.0.1, started and
stopped here. Every wait is for a state (a metric point, a job's status), never
for a span of time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sm_imgclf as smi
from sm_imgclf.training.job import TrainingJob

pytestmark = pytest.mark.tracking
mlflow = pytest.importorskip("mlflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``mlflow server`` on 127.0.0.1 with a SQLite store in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "server.log"
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
            "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1], "--workers", "1",
        ]  # fmt: skip
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        until(self._healthy, self.process, "the MLflow server to answer")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait()


def until(ready: Callable[[], Any], process: Any, what: str) -> Any:
    """Poll ``ready`` until it answers something true; fail if ``process`` ended first."""
    while not (found := ready()):
        ended = process.poll() if hasattr(process, "poll") else process()
        assert not ended, f"gave up waiting for {what}: it ended ({ended})"
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("mlflow"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> smi.ImageFolderDataset:
    folder = tmp_path_factory.mktemp("digits")
    smi.digits_to_folder(folder / "all", size=16, limit_per_class=20)
    return smi.ImageFolderDataset(folder / "all").split(valid=0.25, test=0.2, seed=0)


def estimator(session: smi.Session, epochs: int = 2) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        hyperparameters={"epochs": epochs, "batch_size": 32, "image_size": 16},
    )


def the_run(client: Any, name: str) -> Any:
    found = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"attributes.run_name = '{name}'",
    )
    return found[0] if found else None


def gated_job(session: smi.LocalSession, channels: smi.Channels) -> tuple[str, Callable[[], Any]]:
    """Start a job that waits after each epoch for continue_training()."""
    spec = estimator(session).plan(channels)
    session.backend.start_training(spec, epoch_gate=True)

    def ended() -> Any:
        status = session.backend.describe_training(spec.job_name).status
        return status if status not in ("InProgress", "Stopping") else None

    return spec.job_name, ended


def test_a_local_job_logs_every_epoch_while_it_runs(
    server: Server, digits: smi.ImageFolderDataset, tmp_path: Path
) -> None:
    session = smi.LocalSession(tmp_path / "session", tracking_uri=server.url)
    channels = digits.upload(session, "digits", progress=False)
    name, ended = gated_job(session, channels)
    client = mlflow.MlflowClient(server.url)

    def first_epoch() -> Any:
        run = the_run(client, name)
        return run if run and client.get_metric_history(run.info.run_id, "valid/accuracy") else None

    run = until(first_epoch, ended, "epoch 1 in MLflow")
    # The job waits at its gate after epoch 1: the point is there before the job ends.
    assert session.backend.describe_training(name).status == "InProgress"
    assert run.info.status == "RUNNING"
    session.backend.continue_training(name, 1)
    TrainingJob(name, session).wait(logs=False)
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["hp.image_size"] == "16" and run.data.params["model"] == "resnet18"
    assert run.data.params["hp.lr"] == "0.001"
    assert len(run.data.params["data.train.manifest_md5"]) == 32
    history = client.get_metric_history(run.info.run_id, "valid/accuracy")
    assert [point.step for point in history] == [1, 2]  # one point per epoch
    assert "test/accuracy" in run.data.metrics
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model", tracking_uri=server.url,
        dst_path=str(tmp_path / "download"),
    )  # fmt: skip
    assert (Path(local) / "manifest.json").is_file() and (Path(local) / "model.pth").is_file()


def test_a_tracking_server_that_goes_away_costs_the_job_a_warning(
    digits: smi.ImageFolderDataset, tmp_path: Path
) -> None:
    (tmp_path / "doomed").mkdir()
    doomed = Server(tmp_path / "doomed")
    session = smi.LocalSession(tmp_path / "session", tracking_uri=doomed.url)
    channels = digits.upload(session, "digits", progress=False)
    name, ended = gated_job(session, channels)
    client = mlflow.MlflowClient(doomed.url)
    run = until(lambda: the_run(client, name), ended, "the job's run")
    doomed.stop()  # mid-job: the next epoch, the test metrics and the package find no server
    session.backend.continue_training(name, 1)
    job = TrainingJob(name, session)
    job.wait(logs=False)
    assert job.status == "Completed"
    logs = "\n".join(job.logs())
    assert f"tracking: MLflow at {doomed.url} failed" in logs
    assert "epoch=2 " in logs and run.info.run_id


def test_a_tuning_run_is_a_parent_run_with_a_child_per_trial(
    server: Server, digits: smi.ImageFolderDataset, tmp_path: Path
) -> None:
    session = smi.LocalSession(tmp_path / "session", tracking_uri=server.url)
    channels = digits.upload(session, "digits", progress=False)
    run = smi.TuningRun(
        estimator(session, epochs=1),
        {"lr": smi.Continuous(1e-3, 1e-2, scale="log")},
        strategy="random",
        max_jobs=2,
        max_parallel_jobs=1,
    )
    result = run.run(channels, logs=False, name="tracked-tuning")
    client = mlflow.MlflowClient(server.url)
    parent = the_run(client, "tracked-tuning")
    assert parent.info.status == "FINISHED" and parent.data.tags["sm_imgclf.kind"] == "tuning"
    assert parent.data.tags["sm_imgclf.best_trial"] == result.best.job_name
    assert "lr" in parent.data.params
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == sorted(t.job_name for t in result.trials)
    assert {c.data.tags["sm_imgclf.trial_state"] for c in children} == {"completed"}
    assert all(c.info.status == "FINISHED" for c in children)


def test_a_registered_version_deploys_by_name_and_serves(
    server: Server, digits: smi.ImageFolderDataset, tmp_path: Path
) -> None:
    session = smi.LocalSession(tmp_path / "session", tracking_uri=server.url)
    channels = digits.upload(session, "digits", progress=False)
    job = estimator(session, epochs=1).fit(channels, logs=False)
    first, second = job.register("digits"), job.register("digits")
    assert (str(first), str(second)) == ("digits:1", "digits:2")
    client = mlflow.MlflowClient(server.url)
    version = client.get_model_version("digits", "2")
    assert version.run_id == first.run_id and version.tags["sm_imgclf.job"] == job.name
    image = next(iter(sorted(digits.files("test"))))
    with smi.deploy_registered(session, "digits", "registered") as endpoint:
        answer = endpoint.predict(image)
    with job.deploy("direct") as endpoint:
        direct = endpoint.predict(image)
    assert answer.label == direct.label and answer.score == pytest.approx(direct.score)
    with pytest.raises(smi.ConfigurationError, match="no version 7 of model 'digits'"):
        smi.deploy_registered(session, "digits:7")


def test_a_job_that_ran_untracked_cannot_be_registered(
    server: Server, digits: smi.ImageFolderDataset, tmp_path: Path
) -> None:
    untracked = smi.LocalSession(tmp_path / "session")
    channels = digits.upload(untracked, "digits", progress=False)
    job = estimator(untracked, epochs=1).fit(channels, logs=False)
    with pytest.raises(smi.ConfigurationError, match="tracking_uri"):
        job.register("digits")
    tracked = smi.LocalSession(tmp_path / "session", tracking_uri=server.url)
    with pytest.raises(smi.BackendError, match="ran without tracking"):
        smi.TrainingJob.attach(job.name, tracked).register("digits")
