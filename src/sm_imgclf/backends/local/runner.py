"""The local stand-in for SageMaker's platform around one training job.

``python -m sm_imgclf.backends.local.runner <job_dir>`` runs the job program
with the SageMaker environment contract, records its status in
``status.json``, and on success packs ``model/`` into ``output/model.tar.gz``
as SageMaker does. It runs in its own process session, so the job outlives
the Python process that started it, as a SageMaker job does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sm_imgclf.backends.local.processes import alive
from sm_imgclf.contracts.tracking import RUN_NAME_ENV
from sm_imgclf.runtime.job.control import EPOCH_GATE, FEATURE_STORE, STOP_FILE

STATUS, SPEC, LOG = "status.json", "spec.json", "log.txt"
STOP = "stop-requested"  # written by a stop that may come before the runner can take a signal
BACKEND_OPTIONS = "backend.json"  # the options of the session that started a tuning run
GATE = "gate"  # where the job waits for a verdict after each epoch, when asked to


def write_status(job_dir: Path, **fields: Any) -> None:
    """Atomically merge ``fields`` into the job's ``status.json``."""
    path = job_dir / STATUS
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(fields)
    partial = job_dir / f".{STATUS}.partial"
    partial.write_text(json.dumps(current, indent=2))
    os.replace(partial, path)


def listen_for_stop(folder: Path, on_stop: Callable[[], None]) -> bool:
    """Call ``on_stop`` on SIGTERM from now on; return whether a stop was asked for already.

    A runner can be stopped the moment it is spawned, before Python has even
    started: :func:`request_stop` then leaves a file instead of a signal, which
    would kill the runner before it could record anything.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: on_stop())
    write_status(folder, accepts_stop=True)
    return (folder / STOP).exists()


def request_stop(folder: Path, pid: int | None) -> None:
    """Ask the runner (or tuner) in ``folder`` to stop: a file always, a signal once it listens."""
    (folder / STOP).touch()
    # The file first, then the look at accepts_stop: the runner does the two in the other
    # order, so one of them always sees the other's.
    if json.loads((folder / STATUS).read_text()).get("accepts_stop") and pid and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def job_environment(job_dir: Path, request: dict[str, Any]) -> dict[str, str]:
    """The SageMaker contract's variables for a local job."""
    channels = request["channels"]
    env = dict(os.environ)
    env.update({f"SM_CHANNEL_{name.upper()}": path for name, path in channels.items()})
    env.update(
        SM_CHANNELS=json.dumps(sorted(channels)),
        SM_MODEL_DIR=str(job_dir / "model"),
        SM_OUTPUT_DATA_DIR=str(job_dir / "output" / "data"),
        SM_IMGCLF_CHECKPOINT_DIR=str(job_dir / "checkpoints"),
        SM_HOSTS='["localhost"]',
        SM_CURRENT_HOST="localhost",
        SM_NUM_GPUS=str(_gpus()),
        SM_HPS=json.dumps(request["hyperparameters"]),
        PYTHONUNBUFFERED="1",
    )
    if request.get("source_dir"):  # the user's modules import as they would in a container
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (request["source_dir"], env.get("PYTHONPATH")) if p
        )
    env.pop(FEATURE_STORE, None)
    if request.get("feature_store"):
        env[FEATURE_STORE] = request["feature_store"]
    env.update(request.get("environment", {}))
    env[RUN_NAME_ENV] = request["job_name"]  # the MLflow run's name, when it tracks
    env[STOP_FILE] = str(job_dir / STOP)  # the job stops at its next step once it exists
    if request.get("epoch_gate"):
        env[EPOCH_GATE] = str(job_dir / GATE)
    return env


def _gpus() -> int:
    # Importing torch here would add seconds to every job start; the driver lists its GPUs.
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def main(job_dir: Path) -> int:
    """Run the job in ``job_dir`` to the end and record how it ended."""
    children: list[subprocess.Popen[bytes]] = []

    def forward() -> None:
        write_status(job_dir, status="Stopping")
        for child in children:  # none yet when the stop comes before the job starts
            child.send_signal(signal.SIGTERM)  # as SageMaker stops: the best epoch is packaged

    if listen_for_stop(job_dir, forward):
        write_status(job_dir, status="Stopped", ended=time.time())
        return 0
    request = json.loads((job_dir / SPEC).read_text())
    (job_dir / "output" / "data").mkdir(parents=True, exist_ok=True)
    for stale in ("failure", "model.tar.gz"):
        (job_dir / "output" / stale).unlink(missing_ok=True)
    with (job_dir / LOG).open("ab") as log:
        children.append(
            subprocess.Popen(
                request["command"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=job_environment(job_dir, request),
                cwd=job_dir,
            )
        )
    child = children[0]
    write_status(job_dir, job_pid=child.pid, started=time.time())
    if (job_dir / STOP).exists():  # asked while the job was being started
        child.send_signal(signal.SIGTERM)
    code = child.wait()
    write_status(job_dir, ended=time.time(), exit_code=code, **_outcome(job_dir, code))
    return 0


def _outcome(job_dir: Path, code: int) -> dict[str, Any]:
    stopping = (
        json.loads((job_dir / STATUS).read_text()).get("status") == "Stopping"
        or (job_dir / STOP).exists()
    )
    if code == 0 and (job_dir / "model" / "manifest.json").is_file():
        with tarfile.open(job_dir / "output" / "model.tar.gz", "w:gz") as archive:
            for item in sorted((job_dir / "model").iterdir()):
                archive.add(item, arcname=item.name)
        # A stopped job that packaged its best epoch is Stopped with a model, as on SageMaker.
        return {"status": "Stopped" if stopping else "Completed"}
    if stopping:
        return {"status": "Stopped"}
    failure = job_dir / "output" / "failure"
    reason = failure.read_text() if failure.is_file() else _tail(job_dir / LOG, code)
    return {"status": "Failed", "failure_reason": reason.strip()[-2000:]}


def _tail(log: Path, code: int) -> str:
    lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    died = f"signal {-code}" if code < 0 else f"exit code {code}"
    return f"The job process ended with {died}. Last lines of its log:\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
