"""The local stand-in for SageMaker's platform around one training job.

``python -m sm_imgclf.backends.local_runner <job_dir>`` runs the job program
with the SageMaker environment contract, records its status in
``status.json``, and on success packs ``model/`` into ``output/model.tar.gz``
as SageMaker does. It runs in its own process session, so the job outlives
the Python process that started it, as a SageMaker job does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

STATUS, SPEC, LOG = "status.json", "spec.json", "log.txt"


def write_status(job_dir: Path, **fields: Any) -> None:
    """Atomically merge ``fields`` into the job's ``status.json``."""
    path = job_dir / STATUS
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(fields)
    partial = job_dir / f".{STATUS}.partial"
    partial.write_text(json.dumps(current, indent=2))
    os.replace(partial, path)


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
        SM_HOSTS='["localhost"]', SM_CURRENT_HOST="localhost",
        SM_NUM_GPUS=str(_gpus()), SM_HPS=json.dumps(request["hyperparameters"]),
        PYTHONUNBUFFERED="1",
    )
    return env


def _gpus() -> int:
    # Importing torch here would add seconds to every job start; the driver lists its GPUs.
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def main(job_dir: Path) -> int:
    """Run the job in ``job_dir`` to the end and record how it ended."""
    request = json.loads((job_dir / SPEC).read_text())
    (job_dir / "output" / "data").mkdir(parents=True, exist_ok=True)
    for stale in ("failure", "model.tar.gz"):
        (job_dir / "output" / stale).unlink(missing_ok=True)
    with (job_dir / LOG).open("ab") as log:
        child = subprocess.Popen(request["command"], stdout=log, stderr=subprocess.STDOUT,
                                 env=job_environment(job_dir, request), cwd=job_dir)
    write_status(job_dir, job_pid=child.pid, started=time.time())

    def forward(signum: int, frame: Any) -> None:
        write_status(job_dir, status="Stopping")
        child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    code = child.wait()
    write_status(job_dir, ended=time.time(), exit_code=code, **_outcome(job_dir, code))
    return 0


def _outcome(job_dir: Path, code: int) -> dict[str, Any]:
    stopping = json.loads((job_dir / STATUS).read_text()).get("status") == "Stopping"
    if code == 0 and (job_dir / "model" / "manifest.json").is_file():
        with tarfile.open(job_dir / "output" / "model.tar.gz", "w:gz") as archive:
            for item in sorted((job_dir / "model").iterdir()):
                archive.add(item, arcname=item.name)
        return {"status": "Completed"}
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
