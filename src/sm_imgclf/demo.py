"""The end-to-end demo on this machine: real handwritten digits, no AWS account needed.

It grows with the library; today it writes the images, validates them,
uploads them to a local session, trains a classifier in a local training job,
deploys it to a local endpoint, asks it about a few test images, evaluates the
test split with plots, and deletes the endpoint.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sm_imgclf.data.dataset import ImageFolderDataset
from sm_imgclf.data.digits import digits_to_folder
from sm_imgclf.data.report import ValidationReport
from sm_imgclf.data.upload import Channels
from sm_imgclf.serving.evaluation import Evaluation
from sm_imgclf.session import LocalSession
from sm_imgclf.training.job import TrainingJob


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        workdir: The folder holding everything the demo wrote.
        report: The validation report of the digits.
        channels: The uploaded channels, after the first upload.
        second_upload_bytes: Bytes sent by the repeated upload (0: nothing had changed).
        job: The training job, when training ran.
        evaluation: The endpoint's evaluation on the test split, when training ran.
    """

    workdir: Path
    report: ValidationReport
    channels: Channels
    second_upload_bytes: int
    job: TrainingJob | None = None
    evaluation: Evaluation | None = None


def run_demo(workdir: str | Path = "sm-imgclf-demo", *, per_class: int | None = 60,
             epochs: int = 6, progress: bool | None = None, echo: bool = True) -> DemoResult:
    """Run the demo in ``workdir`` (replaced if it exists) and print what happens.

    Args:
        workdir: Where to write images, the session and the report.
        per_class: Digits per class to use (``None`` for all 1,797 images).
        epochs: Training epochs (0 skips training).
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
        result.job = _train(session, channels, epochs, say)
        result.evaluation = _serve(result.job, channels, workdir, say)
    say(f"Everything is in {workdir} (validation report: {workdir / 'validation.json'}).")
    return result


def _train(session: LocalSession, channels: Channels, epochs: int,
           say: Callable[..., None]) -> TrainingJob:
    from sm_imgclf.training.estimator import TransferLearningEstimator

    # No pretrained weights offline: a small resnet18 learns 32-pixel digits from scratch.
    estimator = TransferLearningEstimator(
        "resnet18", session=session, weights=None, trainable="all",
        hyperparameters={"image_size": 32, "epochs": epochs, "lr": 0.003,
                         "augmentation": "none", "batch_size": 32})
    say(f"5. Training resnet18 from scratch for {epochs} epochs in a local training job ...")
    job = estimator.fit(channels, logs=False)
    for row in job.metrics:
        say("     " + "  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    say(f"   {job.status}; model package: {job.model_uri}")
    return job


def _serve(job: TrainingJob, channels: Channels, workdir: Path,
           say: Callable[..., None]) -> Evaluation:
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    test = Path(url2pathname(urlsplit(channels["test"]).path))
    say("6. Deploying the model package to a local endpoint ...")
    with job.deploy("digits-demo") as endpoint:
        samples = [next((test / digit).glob("*.png")) for digit in ("3", "5", "8")]
        for path, prediction in zip(samples, endpoint.predict(samples, top_k=2), strict=True):
            say(f"     {path.parent.name}/{path.name}: predicted {prediction.label!r} "
                f"({prediction.score:.2f}); runner-up {prediction.top_k[1][0]!r}")
        evaluation = endpoint.evaluate(test, plots=workdir / "report")
        say(f"7. Evaluated the test split: {evaluation}")
        say(f"     plots: {', '.join(evaluation.plots)}")
    say("8. Deleted the endpoint.")
    return evaluation


def _indent(text: str) -> str:
    return "\n".join(f"     {line}" for line in text.splitlines())
