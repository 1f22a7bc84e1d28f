"""Building the model and the trainer for a job, including the cached-features shortcut."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sm_imgclf.runtime.job import checkpoint
from sm_imgclf.runtime.job.backbone_pass import to_features
from sm_imgclf.runtime.job.contract import JobEnvironment
from sm_imgclf.runtime.job.control import JobControl
from sm_imgclf.runtime.job.finetune import batch_norms, head_first, parameter_groups
from sm_imgclf.runtime.job.loop import Trainer
from sm_imgclf.runtime.models import (
    HeadSpec,
    build_model,
    head_module,
    set_trainable,
)
from sm_imgclf.runtime.sources import resolve

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

    from sm_imgclf.contracts.hyperparameters import Hyperparameters
    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.stream import StreamedSplit


def prepare(
    settings: dict[str, Any],
    hp: Hyperparameters,
    splits: dict[str, SplitData | StreamedSplit],
    device: torch.device,
    env: JobEnvironment,
    distributed: tuple[int, int] | None,
    *,
    features_ready: bool = False,
) -> tuple[Trainer, HeadSpec, nn.Module]:
    """Return the trainer, the head spec, and the full model the package will hold.

    With ``features_ready`` the splits already hold the backbone's features
    (read from the feature store), so the backbone does not run.
    """
    from torch import nn

    weights = None if settings["weights"].lower() == "none" else settings["weights"]
    model, head = build_model(
        settings["model"],
        len(splits["train"].class_ids),
        weights=weights,
        hidden=hp.head_hidden,
        dropout=hp.head_dropout,
        channels=env.channels,
    )
    trainable = settings["trainable"]
    trainable = trainable[0] if list(trainable) in (["head"], ["all"]) else trainable
    set_trainable(model, head, trainable)
    found = resolve(settings["model"])
    mean, std = found.mean, found.std
    frozen = [
        m for name, m in model.named_children() if not any(p.requires_grad for p in m.parameters())
    ]
    model.to(device)
    leader = distributed is None or distributed[0] == 0
    common: dict[str, Any] = {
        "hp": hp,
        "device": device,
        "mean": mean,
        "std": std,
        "checkpoint_dir": env.checkpoint_dir,
        "distributed": distributed,
        "log": print if leader else _quiet,
        # One process steers itself; ranks would stop at different steps.
        "control": JobControl.from_env() if distributed is None else None,
        "monitor": make_monitor(settings, hp, splits, device, env) if leader else None,
    }
    head_layer = head_module(model, head)
    if trainable == "head" and hp.augmentation == "none" and not isinstance(head_layer, nn.Conv2d):
        if not features_ready:
            to_features(model, head, splits, device, mean, std, hp.batch_size, distributed)
        # Each rank trains on its share of the features: the head's gradients must be
        # averaged across ranks like the whole model's, or every rank learns its own head.
        head_trainee: nn.Module = head_layer
        if distributed is not None:
            head_trainee = nn.parallel.DistributedDataParallel(head_layer)
        return Trainer(head_trainee, features=True, **common), head, model
    if trainable == "head" and hp.augmentation != "none" and leader:
        # A frozen backbone over augmented images: its features change every epoch.
        print(
            f"features: not cached, since augmentation={hp.augmentation!r} makes every epoch "
            f"run the frozen backbone over all {len(splits['train'])} training images; with "
            "augmentation='none' it runs once and each epoch trains only the head",
            flush=True,
        )
    groups = None
    if weights is not None and trainable != "head":
        groups = _fine_tuning(model, head, splits, hp, device, (mean, std), distributed, env)
        frozen += batch_norms(model)
    trainee: nn.Module = model
    if distributed is not None:
        trainee = nn.parallel.DistributedDataParallel(model)
    return Trainer(trainee, frozen=frozen, groups=groups, **common), head, model


def _fine_tuning(
    model: nn.Module,
    head: HeadSpec,
    splits: dict[str, SplitData | StreamedSplit],
    hp: Hyperparameters,
    device: torch.device,
    normalising: tuple[tuple[float, ...], tuple[float, ...]],
    distributed: tuple[int, int] | None,
    env: JobEnvironment,
) -> list[dict[str, Any]]:
    """The head alone first (unless resuming, or asked not to), then discriminative rates."""
    from torch import nn

    leader = distributed is None or distributed[0] == 0
    log = print if leader else _quiet
    layer = head_module(model, head)
    if not hp.head_epochs:
        log("fine-tuning: head_epochs=0, so the head starts random beside the pretrained blocks")
    elif isinstance(layer, nn.Conv2d):
        log("fine-tuning: a convolutional head takes no cached features; it trains with the rest")
    elif checkpoint.load(env.checkpoint_dir) is None:
        head_first(model, head, splits, hp, device, normalising, distributed, log)
    return parameter_groups(model, layer, hp)


def make_monitor(
    settings: dict[str, Any],
    hp: Hyperparameters,
    splits: dict[str, SplitData | StreamedSplit],
    device: torch.device,
    env: JobEnvironment,
    folder: Path | None = None,
) -> Any:
    """The recorder and profiler, writing to ``folder`` (default ``<output>/debug``).

    ``None`` when ``record_every`` is 0.
    """
    import torch

    from sm_imgclf.runtime.checks.monitor import Monitor

    if hp.record_every == 0:
        return None
    train = splits["train"]
    counts = torch.bincount(train.labels, minlength=len(train.class_ids)).tolist()
    meta = {
        "model": settings["model"],
        "class_names": list(train.class_names),
        "train_counts": counts,
        "record_every": hp.record_every,
        "batch_size": hp.batch_size,
        "device": device.type,
        "steps_per_epoch": -(-len(train) // hp.batch_size),
        "trainable": list(settings["trainable"]),
    }
    return Monitor(folder or env.output_dir / "debug", hp, meta, device, print)


def _quiet(line: str) -> None:
    """Other ranks stay silent, so metrics are reported once."""
