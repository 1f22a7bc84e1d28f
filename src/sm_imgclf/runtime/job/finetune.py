"""Fine-tuning from pretrained weights: the head first, on cached features, then the rest.

A new head on a pretrained backbone starts random. Trained together from the
first step, its large early gradients flow back into the pretrained blocks and
wash out what they knew. So the head is first fitted alone, on features the
frozen backbone computes once (seconds an epoch), and only then does the rest
train, at a fraction of the head's rate. Batch norms keep their pretrained
statistics throughout: small datasets, and images unlike ImageNet's (upscaled
digits), move the running statistics far from what the weights were trained
with, and validation then collapses (digits at 64 px: 0.61 against 0.97 test accuracy).
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sm_imgclf.runtime.job.backbone_pass import to_features
from sm_imgclf.runtime.models import HeadSpec, head_module

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

    from sm_imgclf.contracts.hyperparameters import Hyperparameters
    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.stream import StreamedSplit


def _held(split: SplitData | StreamedSplit) -> SplitData:
    """A split after the feature pass: in memory, whatever it was before."""
    from sm_imgclf.runtime.job.data import SplitData

    assert isinstance(split, SplitData)  # to_features replaced every streamed split
    return split


def batch_norms(model: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer of ``model``: kept in eval mode, so its statistics stay."""
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def head_first(
    model: nn.Module,
    head: HeadSpec,
    splits: dict[str, SplitData | StreamedSplit],
    hp: Hyperparameters,
    device: torch.device,
    normalising: tuple[tuple[float, ...], tuple[float, ...]],
    distributed: tuple[int, int] | None,
    log: Callable[[str], None],
) -> None:
    """Fit ``model``'s head alone for ``hp.head_epochs`` at ``hp.head_lr`` on cached features.

    The splits keep their images: the features are computed into copies. The
    head ends with the weights of its best epoch (valid accuracy, then loss;
    train when there is no valid split).
    """
    from sm_imgclf.runtime.job.loop import class_weights, lr_factor, make_optimizer, training_loss

    started = time.perf_counter()
    copies: dict[str, SplitData | StreamedSplit] = {
        name: replace(splits[name]) for name in ("train", "valid") if name in splits
    }
    mean, std = normalising
    to_features(model, head, copies, device, mean, std, hp.batch_size, distributed)
    features = {name: _held(split) for name, split in copies.items()}
    layer = head_module(model, head)
    layer.train()
    probe = hp.updated(lr=hp.head_lr, epochs=hp.head_epochs, warmup_epochs=0)
    optimizer = make_optimizer(list(layer.parameters()), probe)
    factor = lr_factor(probe)
    loss_fn = training_loss(class_weights(features["train"], hp.class_weighting), hp, device)
    best: dict[str, Any] = {"score": None}
    for epoch in range(hp.head_epochs):
        for group in optimizer.param_groups:
            group["lr"] = hp.head_lr * factor(epoch)
        _head_epoch(layer, features["train"], hp, device, optimizer, loss_fn, epoch)
        scored = _score(layer, features.get("valid") or features["train"], device, loss_fn)
        if best["score"] is None or scored > best["score"]:
            best = {"score": scored, "epoch": epoch + 1, "state": copy.deepcopy(layer.state_dict())}
    layer.load_state_dict(best["state"])
    accuracy, loss = best["score"][0], -best["score"][1]
    where = "valid" if "valid" in copies else "train"
    # No "name=value" here: SageMaker's metric definitions would read it as an epoch.
    log(
        f"fine-tuning: the head trained alone for {hp.head_epochs} epochs on cached features "
        f"in {time.perf_counter() - started:.1f}s (best epoch {best['epoch']}: {where} "
        f"accuracy {accuracy:.4f}, loss {loss:.4f}); now the rest trains too, "
        f"at lr x {hp.backbone_lr_ratio:g}"
    )


def _head_epoch(
    layer: nn.Module,
    train: SplitData,
    hp: Hyperparameters,
    device: torch.device,
    optimizer: Any,
    loss_fn: Any,
    epoch: int,
) -> None:
    import torch

    generator = torch.Generator().manual_seed(hp.seed * 1_000_003 + 7_919 * (epoch + 1))
    order = torch.randperm(len(train), generator=generator)
    for start in range(0, len(order), hp.batch_size):
        index = order[start : start + hp.batch_size]
        loss = loss_fn(layer(train.images[index].to(device)), train.labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _score(
    layer: nn.Module, split: SplitData, device: torch.device, loss_fn: Any
) -> tuple[float, float]:
    """(accuracy, -loss) of ``layer`` on ``split``'s features: larger is better."""
    import torch

    layer.eval()
    with torch.inference_mode():
        logits = torch.cat(
            [layer(split.images[i : i + 4096].to(device)) for i in range(0, len(split), 4096)]
        )
        labels = split.labels.to(device)
        loss = float(loss_fn(logits.float(), labels))
        accuracy = float((logits.argmax(1) == labels).float().mean())
    layer.train()
    return accuracy, -loss


def parameter_groups(model: nn.Module, head_layer: nn.Module, hp: Hyperparameters) -> list[Any]:
    """The trainable parameters in two groups: the head at ``lr``, the rest at a fraction."""
    mine = {id(p) for p in head_layer.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    rest = [p for p in trainable if id(p) not in mine]
    groups = [{"params": [p for p in trainable if id(p) in mine], "lr": hp.lr, "name": "head"}]
    if rest:
        groups.append({"params": rest, "lr": hp.lr * hp.backbone_lr_ratio, "name": "backbone"})
    return groups
