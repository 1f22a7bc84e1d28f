"""Training checks: deliberately broken models trip the right rule, a healthy one trips none."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import sm_imgclf as smi
from sm_imgclf.contracts.hyperparameters import RULE_NAMES
from sm_imgclf.runtime.checks.monitor import Monitor
from sm_imgclf.runtime.checks.rules import RULES
from sm_imgclf.runtime.job.data import SplitData
from sm_imgclf.runtime.job.loop import Trainer

CLASSES = tuple(str(d) for d in range(10))


def digits_split(indices: np.ndarray) -> SplitData:
    data = load_digits()
    images = (data.images[indices] * (255 / 16)).astype(np.uint8)
    tensor = torch.from_numpy(images).unsqueeze(1).repeat(1, 3, 1, 1)
    tensor = torch.nn.functional.interpolate(tensor.float(), size=16).to(torch.uint8)
    return SplitData(tensor, torch.from_numpy(data.target[indices]).long(), CLASSES, CLASSES)


@pytest.fixture(scope="module")
def splits() -> dict[str, SplitData]:
    order = np.random.default_rng(0).permutation(len(load_digits().target))
    return {
        "train": digits_split(order[:600]),
        "valid": digits_split(order[600:900]),
        "tiny": digits_split(order[:24]),
    }


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


def train(
    model: nn.Module, train_split: SplitData, valid: SplitData | None, tmp: Path, **hp: Any
) -> tuple[smi.DebugProfileAnalyzer, list[str], dict[str, Any]]:
    settings = {
        "epochs": 6,
        "lr": 0.01,
        "batch_size": 32,
        "image_size": 16,
        "augmentation": "none",
        "record_every": 2,
        "profile_interval": 0.2,
        **hp,
    }
    hyper = smi.Hyperparameters.from_dict(settings)
    lines: list[str] = []
    counts = torch.bincount(train_split.labels, minlength=10).tolist()
    meta = {
        "model": "test",
        "class_names": list(CLASSES),
        "train_counts": counts,
        "steps_per_epoch": -(-len(train_split) // hyper.batch_size),
    }
    monitor = Monitor(tmp / "debug", hyper, meta, torch.device("cpu"), lines.append)
    trainer = Trainer(
        model,
        hyper,
        torch.device("cpu"),
        (0.5,) * 3,
        (0.25,) * 3,
        tmp / "checkpoints",
        log=lines.append,
        monitor=monitor,
    )
    try:
        state = trainer.fit(train_split, valid)
    finally:
        monitor.close()
    return smi.DebugProfileAnalyzer(tmp), lines, state


def fired(analyzer: smi.DebugProfileAnalyzer) -> set[str]:
    return {r.name for r in analyzer.rules() if r.triggered}


def test_a_healthy_run_fires_no_rule(splits: dict, tmp_path: Path) -> None:
    analyzer, lines, state = train(cnn(), splits["train"], splits["valid"], tmp_path, epochs=5)
    assert fired(analyzer) == set(), analyzer.summary()
    assert not [line for line in lines if line.startswith("rule ")]
    assert state["history"][-1]["valid:accuracy"] > 0.8


def test_learning_rate_far_too_high(splits: dict, tmp_path: Path) -> None:
    analyzer, lines, _ = train(
        cnn(),
        splits["train"],
        splits["valid"],
        tmp_path,
        lr=10.0,
        optimizer="sgd",
        momentum=0.0,
        epochs=3,
    )
    assert fired(analyzer) & {"exploding_tensor", "loss_not_decreasing"}, analyzer.summary()
    assert any(
        line.startswith("rule exploding_tensor triggered")
        or line.startswith("rule loss_not_decreasing triggered")
        for line in lines
    )


def test_stop_on_ends_training_early(splits: dict, tmp_path: Path) -> None:
    _, lines, state = train(
        cnn(),
        splits["train"],
        splits["valid"],
        tmp_path,
        lr=10.0,
        optimizer="sgd",
        momentum=0.0,
        epochs=6,
        stop_on="any",
    )
    assert any("stopping training: rule" in line for line in lines)
    assert len(state["history"]) < 6


@pytest.mark.parametrize("scale", [0.0, 1000.0])
def test_zero_or_huge_initial_weights(splits: dict, tmp_path: Path, scale: float) -> None:
    model = cnn()
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.mul_(scale)
    analyzer, _, _ = train(model, splits["train"], splits["valid"], tmp_path, epochs=1)
    result = next(r for r in analyzer.rules() if r.name == "poor_weight_initialization")
    assert result.triggered and result.step == 1, result
    assert ("constant" if scale == 0 else "above 10") in result.message


def test_deep_sigmoid_stack_vanishes(splits: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(768, 64), nn.Sigmoid()]
    for _ in range(14):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    layers.append(nn.Linear(64, 10))
    analyzer, _, _ = train(
        nn.Sequential(*layers),
        splits["train"],
        splits["valid"],
        tmp_path,
        epochs=1,
        optimizer="sgd",
        lr=0.01,
    )
    result = next(r for r in analyzer.rules() if r.name == "vanishing_gradient")
    assert result.triggered and "smallest 1" in result.message, result


def test_many_epochs_on_a_tiny_split_overfit(splits: dict, tmp_path: Path) -> None:
    analyzer, _, _ = train(
        cnn(),
        splits["tiny"],
        splits["valid"],
        tmp_path,
        epochs=25,
        lr=0.01,
        batch_size=8,
        record_every=10,
    )
    assert {"overfit", "overtraining"} <= fired(analyzer), analyzer.summary()


def test_imbalanced_dataset(splits: dict, tmp_path: Path) -> None:
    train_split = splits["train"]
    keep = torch.cat(
        [
            torch.nonzero(train_split.labels == 0).flatten(),
            *(torch.nonzero(train_split.labels == c).flatten()[:4] for c in range(1, 10)),
        ]
    )
    small = SplitData(train_split.images[keep], train_split.labels[keep], CLASSES, CLASSES)
    analyzer, _, _ = train(cnn(), small, splits["valid"], tmp_path, epochs=1)
    result = next(r for r in analyzer.rules() if r.name == "class_imbalance")
    assert result.triggered and "'0'" in result.message, result


def test_dead_relus(splits: dict, tmp_path: Path) -> None:
    model = cnn()
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.BatchNorm2d):
                module.bias.fill_(-100.0)
    analyzer, _, _ = train(model, splits["train"], splits["valid"], tmp_path, epochs=1)
    assert "dead_relu" in fired(analyzer), analyzer.summary()


def test_thresholds_change_offline_without_retraining(splits: dict, tmp_path: Path) -> None:
    analyzer, _, _ = train(cnn(), splits["train"], splits["valid"], tmp_path, epochs=2)
    assert "class_imbalance" not in fired(analyzer)
    strict = analyzer.rules(
        class_imbalance={"threshold_imbalance": 1.0}, vanishing_gradient={"threshold": 1.0}
    )
    names = {r.name for r in strict if r.triggered}
    assert "vanishing_gradient" in names
    assert next(r for r in strict if r.name == "vanishing_gradient").parameters == {
        "threshold": 1.0
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"overfit": {"patience": 0}}, "overfit.patience must be"),
        ({"overfitting": {"patience": 2}}, "'overfit'"),
        ({"dead_relu": {"threshold": 0.5}}, "threshold_inactivity"),
        ({"dead_relu": {"threshold_layer": 1.5}}, "dead_relu.threshold_layer must be"),
        ({"overfit": 3}, "a mapping of parameter to value"),
    ],
)
def test_bad_rule_parameters(splits: dict, tmp_path: Path, overrides: dict, message: str) -> None:
    (tmp_path / "debug").mkdir()
    (tmp_path / "debug" / "records.jsonl").write_text('{"type": "meta"}\n')
    with pytest.raises(smi.ConfigurationError) as caught:
        smi.DebugProfileAnalyzer(tmp_path).rules(**overrides)
    assert message in str(caught.value)


def test_no_recorded_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(smi.DebugDataNotFoundError, match="record_every=0"):
        smi.DebugProfileAnalyzer.from_path(tmp_path)
    lazy = smi.DebugProfileAnalyzer(tmp_path)  # builds without reading; fails on first use
    with pytest.raises(smi.DebugDataNotFoundError, match="record_every=0"):
        lazy.rules()


def test_a_killed_job_is_read_up_to_its_last_complete_record(splits: dict, tmp_path: Path) -> None:
    analyzer, _, _ = train(cnn(), splits["train"], splits["valid"], tmp_path, epochs=2)
    path = tmp_path / "debug" / "records.jsonl"
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[3][:40])  # cut mid-line, as a kill does
    again = smi.DebugProfileAnalyzer(tmp_path)
    assert len(again.records.steps) == len(analyzer.records.steps)
    assert again.rules() == analyzer.rules()


def test_rule_names_match_the_stop_on_choices() -> None:
    assert tuple(RULES) == RULE_NAMES
    with pytest.raises(smi.ConfigurationError, match="stop_on must be"):
        smi.Hyperparameters(stop_on="overfitting")


def test_analyzer_reads_a_sagemaker_output_archive(
    s3_session: smi.SageMakerSession, splits: dict, tmp_path: Path
) -> None:
    train(cnn(), splits["train"], splits["valid"], tmp_path / "run", epochs=1)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for item in sorted((tmp_path / "run" / "debug").iterdir()):
            tar.add(item, arcname=f"debug/{item.name}")
    s3_session.store.put_bytes("jobs/dogs-9/output/output.tar.gz", archive.getvalue())
    with smi.DebugProfileAnalyzer.from_job(smi.TrainingJob("dogs-9", s3_session)) as analyzer:
        assert analyzer.name == "dogs-9" and analyzer.records.meta["model"] == "test"
        assert len(analyzer.metrics()["epochs"]) == 1
        downloaded = analyzer.folder
        assert (downloaded / "records.jsonl").is_file()
    assert not downloaded.exists()  # closing removed the download
    with pytest.raises(smi.DebugDataNotFoundError, match="no output archive"):
        smi.DebugProfileAnalyzer.from_job(smi.TrainingJob("missing", s3_session))


def test_building_an_analyzer_does_no_io() -> None:
    backend = smi.FakeBackend()
    calls: list[str] = []
    backend.training_output = lambda name, target: calls.append(name)  # type: ignore[assignment]
    analyzer = smi.DebugProfileAnalyzer(smi.TrainingJob("job-1", smi.Session(backend)))
    assert calls == [] and analyzer.name == "job-1" and "not read yet" in repr(analyzer)


def test_metrics_series(splits: dict, tmp_path: Path) -> None:
    analyzer, _, _ = train(cnn(), splits["train"], splits["valid"], tmp_path, epochs=2)
    series = analyzer.metrics()
    assert len(series["epochs"]) == 2 and series["epochs"][0]["confusion"]
    assert sum(map(sum, series["epochs"][0]["confusion"])) == len(splits["valid"])
    assert series["loss"][0][0] == 1 and "0" in series["grad_norm"]
    assert len(series["step_seconds"]) == 2 * 19 and series["step_split"]
    assert series["operators"] and series["operators"][0]["calls"] >= 1
    assert series["system"] and {"cpu", "memory", "rss_mb"} <= set(series["system"][0])
    assert json.dumps(series)  # plain data


@pytest.mark.slow
@pytest.mark.chromium
def test_local_job_report_renders_in_chromium(tmp_path: Path, chromium: str) -> None:
    import subprocess

    smi.digits_to_folder(tmp_path / "images", limit_per_class=15)
    session = smi.LocalSession(tmp_path / "session")
    channels = (
        smi.ImageFolderDataset(tmp_path / "images")
        .split(valid=0.3, seed=0)
        .upload(session, "digits", progress=False)
    )
    job = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={"image_size": 16, "epochs": 2, "augmentation": "none", "record_every": 2},
    ).fit(channels, logs=False)
    analyzer = smi.DebugProfileAnalyzer(job)
    assert analyzer.records.meta["model"] == "resnet18" and len(analyzer.records.epochs) == 2
    page = analyzer.report(tmp_path / "report" / "checks.html")
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    browser = chromium
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1100,2600"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'id="summary"' in dom and 'id="rules"' in dom and 'id="profiler"' in dom
    for name in RULES:
        assert f"<b>{name}</b>" in dom
    assert dom.count('src="data:image/png;base64,') >= 4
    shot = tmp_path / "report" / "checks.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 50_000
    assert "Rules:" in analyzer.summary()
