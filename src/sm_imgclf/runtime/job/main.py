"""The training job program: arguments and environment in, a model package out."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from sm_imgclf.contracts.hyperparameters import Hyperparameters
from sm_imgclf.contracts.metrics import REPORT_BEST_ENV, best_line, best_report
from sm_imgclf.errors import ConfigurationError, SmImgclfError
from sm_imgclf.runtime.job.contract import JOB_PARAMS, JobEnvironment
from sm_imgclf.runtime.job.deadline import Deadline
from sm_imgclf.runtime.job.streams import SurvivingStream

logger = logging.getLogger("sm_imgclf.runtime.job")


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], Hyperparameters]:
    """Split ``--name value`` pairs into job settings and typed hyperparameters."""
    if len(argv) % 2:
        raise ConfigurationError(f"Arguments must come as '--name value' pairs; got {argv!r}.")
    pairs = {}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        if not flag.startswith("--"):
            raise ConfigurationError(f"Expected an argument name such as --lr; got {flag!r}.")
        pairs[flag[2:].replace("-", "_")] = value
    job_params = {p.name: p for p in JOB_PARAMS}
    settings = {p.name: p.default for p in JOB_PARAMS}
    settings |= {k: job_params[k].parse(v) for k, v in pairs.items() if k in job_params}
    hp = Hyperparameters.from_strings({k: v for k, v in pairs.items() if k not in job_params})
    return settings, hp


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; on failure print the reason and write it to ``output/failure``."""
    if not isinstance(sys.stdout, SurvivingStream):  # a toolkit that dies first
        sys.stdout, sys.stderr = SurvivingStream(sys.stdout), SurvivingStream(sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    env = JobEnvironment.from_env()
    tracker = _tracker()
    try:
        settings, hp = parse_args(sys.argv[1:] if argv is None else argv)
        run(env, settings, hp, tracker)
    except KeyboardInterrupt:
        print("job interrupted; its last checkpoint is kept", flush=True)
        if tracker is not None:
            tracker.close("KILLED")
        return 130
    except Exception as error:
        reason = (
            f"{type(error).__name__}: {error}"
            if isinstance(error, SmImgclfError)
            else traceback.format_exc(limit=-8)
        )
        print(reason, file=sys.stderr, flush=True)
        _write_failure(env, reason)
        if tracker is not None:
            tracker.close("FAILED")
        return 1
    return 0


def _tracker() -> Any:
    """The job's MLflow run when it was told to track, else ``None``; never an error."""
    from sm_imgclf.runtime.job.tracking import JobTracker

    try:
        return JobTracker.from_env(os.environ)
    except ImportError:
        print("tracking: MLFLOW_TRACKING_URI is set but mlflow is not installed", flush=True)
        return None


def run(
    env: JobEnvironment, settings: dict[str, Any], hp: Hyperparameters, tracker: Any = None
) -> dict[str, Any]:
    """Train, evaluate and package; return the metrics written to ``metrics.json``.

    With ``tracker`` (a :class:`~sm_imgclf.runtime.job.tracking.JobTracker`) the
    parameters, every epoch and the package go to its MLflow run as well.
    """
    import torch

    from sm_imgclf.runtime.job import feature_store
    from sm_imgclf.runtime.job.data import load_splits
    from sm_imgclf.runtime.job.distributed import setup, teardown
    from sm_imgclf.runtime.job.host_share import HostShare
    from sm_imgclf.runtime.job.setup import prepare

    deadline = _clock(settings)  # from the program's start: decoding counts too
    device = _device()  # before the process group: NCCL's collectives use this GPU
    distributed = setup(env)
    torch.manual_seed(hp.seed)
    channels = {
        name: path
        for name in ("train", "valid", "test")
        if (path := env.channel(name, required=name == "train")) is not None
    }
    print(
        f"job: {settings['model']} on {device}, channels {sorted(channels)}, "
        f"hyperparameters {json.dumps(hp.to_dict())}",
        flush=True,
    )
    if tracker is not None:
        from sm_imgclf._version import __version__
        from sm_imgclf.runtime.job.tracking import job_params

        tracker.params(job_params(settings, hp, channels), {"sm_imgclf.version": __version__})
    sharing = _sharing(settings, hp, channels, env, distributed is not None)
    with feature_store.claimed(sharing) as stored:
        splits: dict[str, Any] = stored or load_splits(
            channels, hp.image_size, hp.augmentation, hp.num_workers, HostShare.from_env()
        )
        trainer, head, model = prepare(
            settings, hp, splits, device, env, distributed, features_ready=stored is not None
        )
        trainer.tracker = tracker
        if sharing is not None and sharing.writable and stored is None and trainer.features:
            feature_store.write(sharing, splits)
    if settings["features_only"]:
        if trainer.monitor is not None:
            trainer.monitor.close()
        return _features_only(env, sharing)
    if settings["search"]:
        trainer, head, hp, state = _search(settings, hp, splits, trainer, head, model, env)
    else:
        trainer.deadline = deadline.sized(model, splits)
        try:
            state = trainer.fit(splits["train"], splits.get("valid"))
        finally:
            if trainer.monitor is not None:
                trainer.monitor.close()
    metrics: dict[str, Any] = {"history": state["history"], "best_epoch": state["best_epoch"]}
    if distributed is None or distributed[0] == 0:
        _print_best(metrics)
    leader = distributed is None or distributed[0] == 0
    if "test" in splits:
        metrics["test"] = trainer.evaluate(splits["test"])
        if leader:  # one line, not one per rank
            print(
                "test " + " ".join(f"test:{k}={v:.4f}" for k, v in metrics["test"].items()),
                flush=True,
            )
    if leader:
        _write_outputs(env, settings, hp, splits["train"], model, head, metrics)
        if not deadline.signalled:
            _release_checkpoints(env)
    if tracker is not None:
        _track_end(tracker, env, metrics, stopped=deadline.signalled or deadline.stop_asked)
    teardown()
    return metrics


def _track_end(tracker: Any, env: JobEnvironment, metrics: dict[str, Any], stopped: bool) -> None:
    """Log the test metrics and the package, then end the run (``KILLED`` when stopped)."""
    if "test" in metrics:
        tracker.epoch(metrics["best_epoch"], {f"test:{k}": v for k, v in metrics["test"].items()})
    tracker.artifacts(env.model_dir, "model")
    tracker.artifacts(env.output_dir, "output")
    tracker.close("KILLED" if stopped else "FINISHED")


def _release_checkpoints(env: JobEnvironment) -> None:
    """Delete a finished trial's own checkpoints from the prefix its tuning job shares.

    SageMaker deletes from S3 what the job deletes from its checkpoint folder, so
    the trials that start later do not copy these files. A job stopped by SIGTERM
    keeps them: a spot interruption sends it too, and the job resumes from them.
    """
    import shutil

    if env.checkpoints_shared and env.checkpoint_dir.is_dir():
        shutil.rmtree(env.checkpoint_dir, ignore_errors=True)
        print(f"checkpoints: deleted this trial's {env.checkpoint_dir}, now packaged", flush=True)


def _clock(settings: dict[str, Any]) -> Deadline:
    """The job's clock; SIGTERM (SageMaker's stop, a local stop) asks it to stop in time."""
    import signal
    import threading

    deadline = Deadline(float(settings["max_run"]))

    def asked(signum: int, frame: Any) -> None:
        # No print here: a signal that lands inside a print would make it re-enter.
        # The loop says why it stops at its next step.
        deadline.stop_asked = deadline.signalled = True

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, asked)
    return deadline


def _sharing(
    settings: dict[str, Any],
    hp: Hyperparameters,
    channels: dict[str, Any],
    env: JobEnvironment,
    distributed: bool,
) -> Any:
    """Where this job's backbone features are shared, if anywhere; says why not."""
    from sm_imgclf.contracts.search import FEATURES_CHANNEL
    from sm_imgclf.runtime.job import feature_store
    from sm_imgclf.runtime.job.control import FEATURE_STORE
    from sm_imgclf.runtime.sources import resolve

    store = dict(os.environ)
    if settings["features_only"] and not store.get(FEATURE_STORE):
        # SageMaker copies the checkpoint folder to S3, whence the trials read it.
        store[FEATURE_STORE] = str(env.checkpoint_dir / FEATURES_CHANNEL)
    shared = env.channels.get(FEATURES_CHANNEL)
    sharing, reason = feature_store.plan(
        settings,
        hp,
        channels,
        resolve(settings["model"]),
        distributed=distributed,
        env=store,
        shared=shared,
    )
    if reason and settings["features_only"]:
        raise ConfigurationError(f"A features-only job cannot store features: {reason}.")
    if reason and "no feature store" not in reason:
        print(f"features: not shared, since {reason}", flush=True)
    if sharing is not None and not sharing.writable and not sharing.path.is_file():
        print(
            f"features: the {FEATURES_CHANNEL!r} channel holds no features "
            f"for this job (key {sharing.key[:12]}): the backbone runs here",
            flush=True,
        )
    return sharing


def _features_only(env: JobEnvironment, sharing: Any) -> dict[str, Any]:
    """End a features job: say where its features are; it packages no model."""
    described = {"key": sharing.key, "file": sharing.path.name, **sharing.described}
    env.model_dir.mkdir(parents=True, exist_ok=True)
    (env.model_dir / "features.json").write_text(json.dumps(described, indent=2))
    print(f"features: ready for the trials in {sharing.path}", flush=True)
    return {"features": described}


def _search(
    settings: dict[str, Any],
    hp: Hyperparameters,
    splits: dict[str, Any],
    trainer: Any,
    head: Any,
    model: Any,
    env: JobEnvironment,
) -> tuple[Any, ...]:
    """Run the job's in-process search; return the best trial's trainer, head, hp and state."""
    from sm_imgclf.runtime.job.search import run_search
    from sm_imgclf.runtime.job.setup import make_monitor

    if not trainer.features:
        raise ConfigurationError(
            "A search inside one job trains heads on cached backbone features: it needs "
            "trainable='head', augmentation='none' and a linear head."
        )
    if trainer.monitor is not None:
        trainer.monitor.close()  # each trial records its own; the best's become the job's
    best = run_search(
        settings["search"],
        hp,
        splits,
        model,
        head,
        trainer,
        env,
        lambda trial_hp, folder: make_monitor(
            settings, trial_hp, splits, trainer.device, env, folder
        ),
    )
    return best.trainer, best.head, best.hp, best.state


def _device() -> Any:
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    # torchrun starts one process per GPU; each must use its own.
    local = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
    torch.cuda.set_device(local)
    # Batches keep one shape (images decoded once at one size, the last batch aside):
    # cuDNN can pick its fastest convolution algorithms once per shape.
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda", local)


def _print_best(metrics: dict[str, Any]) -> None:
    # The package holds the best epoch's weights; its metrics are printed under names the
    # metric definitions do not match, so SageMaker's tuner counts one report per epoch.
    best = next((h for h in metrics["history"] if h["epoch"] == metrics["best_epoch"]), None)
    if best is not None:
        print(best_line(best["epoch"], best), flush=True)
        if os.environ.get(REPORT_BEST_ENV) == "1":
            print(best_report(best), flush=True)


def _write_outputs(
    env: JobEnvironment,
    settings: dict[str, Any],
    hp: Hyperparameters,
    train: Any,
    model: Any,
    head: Any,
    metrics: dict[str, Any],
) -> None:
    from sm_imgclf.runtime.images import resize_size
    from sm_imgclf.runtime.package import write_package
    from sm_imgclf.runtime.sources import resolve

    found = resolve(settings["model"])
    env.output_dir.mkdir(parents=True, exist_ok=True)
    (env.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    best: dict[str, Any] = next(
        (h for h in metrics["history"] if h["epoch"] == metrics["best_epoch"]), {}
    )
    write_package(
        env.model_dir,
        model.state_dict(),
        {
            "architecture": settings["model"],
            "source": found.source,
            "head": head.to_dict(),
            "class_ids": list(train.class_ids),
            "class_names": list(train.class_names),
            "image_size": hp.image_size,
            "resize_size": resize_size(hp.image_size),
            "mean": list(found.mean),
            "std": list(found.std),
            "weights": settings["weights"],
            "trainable": list(settings["trainable"]),
            "hyperparameters": hp.to_dict(),
            "metrics": {
                "best_epoch": metrics["best_epoch"],
                **{k: v for k, v in best.items() if ":" in k},
                **{f"test:{k}": v for k, v in metrics.get("test", {}).items()},
            },
        },
        code=found.code,
        requirements=found.requirements,
    )
    print(f"model package written to {env.model_dir}", flush=True)


def _write_failure(env: JobEnvironment, reason: str) -> None:
    failure = env.output_dir.parent / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(reason)
    except OSError:
        pass  # the reason is already on stderr
