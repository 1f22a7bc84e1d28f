"""Transfer learning at the defaults: a frozen head fitted like a linear probe, and fine-tuning."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import sm_imgclf as smi
from sm_imgclf.contracts.metrics import METRIC_DEFINITIONS
from sm_imgclf.runtime.job.data import load_splits
from sm_imgclf.runtime.job.main import parse_args
from sm_imgclf.runtime.job.setup import prepare
from sm_imgclf.training.estimator import HEAD_DEFAULTS
from test_training import digits, in_process_env, weights_file  # noqa: F401 (a fixture)

CPU = torch.device("cpu")


def test_a_frozen_head_gets_a_linear_probes_defaults_unless_told_otherwise() -> None:
    session = smi.Session(smi.FakeBackend())
    head = smi.TransferLearningEstimator("resnet18", session=session, hyperparameters={"lr": 0.1})
    assert head.hyperparameters.augmentation == "none" and head.hyperparameters.lr == 0.1
    assert head.hyperparameters.epochs == HEAD_DEFAULTS["epochs"]
    asked = smi.TransferLearningEstimator(
        "resnet18", session=session, hyperparameters={"augmentation": "light", "epochs": 3}
    )
    assert asked.hyperparameters.augmentation == "light" and asked.hyperparameters.epochs == 3
    assert asked.hyperparameters.lr == HEAD_DEFAULTS["lr"]
    whole = smi.TransferLearningEstimator("resnet18", session=session, trainable="all")
    assert whole.hyperparameters == smi.Hyperparameters()
    typed = smi.TransferLearningEstimator(
        "resnet18", session=session, hyperparameters=smi.Hyperparameters(epochs=2)
    )
    assert typed.hyperparameters == smi.Hyperparameters(epochs=2)  # given whole: kept whole


def _logistic_loss(features: torch.Tensor, labels: torch.Tensor) -> float:
    from sklearn.linear_model import LogisticRegression

    x, y = features.numpy(), labels.numpy()
    fitted = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    p = fitted.predict_proba(x)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def _head_job(channels: dict, tmp_path: Path, **hp: object) -> tuple:
    argv = ["--model", "efficientnet_lite0", "--trainable", "head", "--weights", "DEFAULT"]
    settings, _ = parse_args(argv)
    values = {"image_size": 32, "record_every": 0, **hp}
    hyper = smi.Hyperparameters(**values)  # type: ignore[arg-type]
    env = in_process_env(tmp_path, channels)
    splits = load_splits(dict(env.channels), 32, "none", 0)
    trainer, _, _ = prepare(settings, hyper, splits, CPU, env, None)
    assert trainer.features
    state = trainer.fit(splits["train"], splits["valid"])
    return state["history"][-1]["train:loss"], splits["train"]


def test_a_head_on_cached_features_converges_like_a_logistic_regression(
    digits: tuple,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, channels = digits
    # The loss the optimiser reached (the packaged epoch is the best on valid, often earlier).
    reached, train = _head_job(dict(channels), tmp_path / "probe", **HEAD_DEFAULTS)
    reference = _logistic_loss(train.images, train.labels)
    assert reached <= reference + 0.02
    # A whole network's defaults leave the same head far from there: the bound bites.
    short, _ = _head_job(dict(channels), tmp_path / "short", augmentation="none")
    assert short > reference + 0.02


def _pretrained_all(
    channels: dict, tmp_path: Path, *extra: str, **hp: object
) -> tuple[object, torch.nn.Module, dict]:
    weights = weights_file(tmp_path)
    argv = ["--model", "resnet18", "--trainable", "all", "--weights", str(weights), *extra]
    settings, _ = parse_args(argv)
    values = {"image_size": 32, "record_every": 0, "augmentation": "none", **hp}
    hyper = smi.Hyperparameters(**values)  # type: ignore[arg-type]
    env = in_process_env(tmp_path, channels)
    splits = load_splits(dict(env.channels), 32, "none", 0)
    trainer, _, model = prepare(settings, hyper, splits, CPU, env, None)
    return trainer, model, splits


def test_fine_tuning_trains_the_head_first_then_the_rest_at_a_lower_rate(
    digits: tuple,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, channels = digits
    (tmp_path / "w").mkdir()
    pristine = torch.load(weights_file(tmp_path / "w"), weights_only=True)
    trainer, model, splits = _pretrained_all(
        dict(channels), tmp_path, head_epochs=5, lr=0.002, backbone_lr_ratio=0.25, epochs=1
    )
    out = capsys.readouterr().out
    assert "fine-tuning: the head trained alone for 5 epochs on cached features" in out
    # The line reports no metric: SageMaker's definitions would count it as an epoch.
    line = next(x for x in out.splitlines() if x.startswith("fine-tuning:"))
    assert not any(re.search(d["Regex"], line) for d in METRIC_DEFINITIONS)
    # The head moved on its own; no pretrained block did.
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pristine.items() if not k.startswith("fc."))
    assert trainer.groups is not None
    rates = {group["name"]: group["lr"] for group in trainer.groups}
    assert rates == {"head": 0.002, "backbone": pytest.approx(0.0005)}
    head_ids = {id(p) for p in model.fc.parameters()}
    assert {id(p) for p in trainer.groups[0]["params"]} == head_ids
    assert not head_ids & {id(p) for p in trainer.groups[1]["params"]}
    # Images stay images for the second phase: the backbone trains on them.
    assert splits["train"].images.dtype == torch.uint8
    trainer.fit(splits["train"], splits["valid"])
    after = model.state_dict()
    assert not torch.equal(after["layer1.0.conv1.weight"], pristine["layer1.0.conv1.weight"])
    # Batch norms keep their pretrained statistics while their weights train.
    assert torch.equal(after["bn1.running_mean"], pristine["bn1.running_mean"])
    assert torch.equal(after["layer4.1.bn2.running_var"], pristine["layer4.1.bn2.running_var"])


def test_a_resumed_fine_tuning_does_not_train_the_head_alone_again(
    digits: tuple,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, channels = digits
    trainer, _, splits = _pretrained_all(dict(channels), tmp_path, head_epochs=2, epochs=1)
    trainer.fit(splits["train"], splits["valid"])
    capsys.readouterr()
    _pretrained_all(dict(channels), tmp_path, head_epochs=2, epochs=2)
    assert "the head trained alone" not in capsys.readouterr().out


def test_without_pretrained_weights_there_is_no_recipe(
    digits: tuple,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, channels = digits
    settings, _ = parse_args(["--model", "resnet18", "--trainable", "all"])
    env = in_process_env(tmp_path, dict(channels))
    splits = load_splits(dict(env.channels), 32, "none", 0)
    hp = smi.Hyperparameters(image_size=32, record_every=0, augmentation="none")
    trainer, _, _ = prepare(settings, hp, splits, CPU, env, None)
    assert trainer.groups is None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.frozen)
    assert "fine-tuning" not in capsys.readouterr().out


def test_head_epochs_zero_says_the_head_starts_random(
    digits: tuple,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, channels = digits
    trainer, _, _ = _pretrained_all(dict(channels), tmp_path, head_epochs=0)
    assert "head_epochs=0, so the head starts random" in capsys.readouterr().out
    assert trainer.groups is not None and len(trainer.groups) == 2
