"""The backbone run once over every split, so a head trains on cached features.

Under several processes (hosts, or torchrun's processes) each runs the backbone
over its own block of every split and the blocks are gathered, so every
process ends with all the features for a fraction of the work.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from sm_imgclf.runtime.models import HeadSpec, head_module, set_submodule

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.stream import StreamedSplit


def to_features(
    model: nn.Module,
    head: HeadSpec,
    splits: dict[str, SplitData | StreamedSplit],
    device: torch.device,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    distributed: tuple[int, int] | None = None,
) -> None:
    """Replace every split's images by backbone features, computed once.

    Args:
        model: The whole model; its head is bypassed during the pass.
        head: Where the head sits in ``model``.
        splits: The decoded splits; their ``images`` become features. A streamed
            split is read once and replaced by a split of its features.
        device: Where the backbone runs.
        mean: Normalisation mean.
        std: Normalisation standard deviation.
        batch_size: The training batch size (the pass uses at least 64).
        distributed: ``(rank, world)`` when several processes share the pass.
    """
    import torch
    from torch import nn

    from sm_imgclf.runtime.job.loop import oom_guard
    from sm_imgclf.runtime.job.stream import StreamedSplit

    streamed = any(isinstance(s, StreamedSplit) for s in splits.values())
    layer = head_module(model, head)
    set_submodule(model, head.path, nn.Identity())
    model.eval()
    started = time.perf_counter()
    step = max(batch_size, 64)
    rank, world = distributed or (0, 1)
    with torch.inference_mode(), oom_guard(step, device, "feature batch"):
        for name, split in splits.items():
            if isinstance(split, StreamedSplit):
                splits[name] = _streamed_features(model, split, device, (mean, std), step)
                continue
            block = math.ceil(len(split) / world)
            mine = split.images[rank * block : (rank + 1) * block]
            if distributed is None:
                split.images = _features(model, mine, device, mean, std, step, side=split.side)
                continue
            # Blocks are gathered at one size, on the device: the last is padded, and a
            # block past the end (fewer images than processes) still needs the shape.
            found = _features(
                model,
                mine if len(mine) else split.images[:1],
                device,
                mean,
                std,
                step,
                rows=block,
                on_host=False,
                side=split.side,
            )
            split.images = _gathered(found, len(split), world)
    set_submodule(model, head.path, layer)
    if distributed is not None and streamed:
        print("features: each process streams the whole training split once", flush=True)
    shared = "" if distributed is None else f" ({distributed[1]} processes, a block each)"
    print(
        f"features: backbone run once over {sum(len(s) for s in splits.values())} images "
        f"in {time.perf_counter() - started:.1f}s{shared}; the head trains on cached "
        "features",
        flush=True,
    )


def _streamed_features(
    model: nn.Module,
    split: StreamedSplit,
    device: torch.device,
    normalising: tuple[tuple[float, ...], tuple[float, ...]],
    step: int,
) -> SplitData:
    """The backbone's features of a streamed split, read from its shards once, in memory.

    Features are what a head trains on, and far smaller than the pixels
    (EfficientNet-Lite0's 1,280 floats against 3x224x224 bytes): they are held.
    """
    import torch

    from sm_imgclf.runtime.images import grow, normalise
    from sm_imgclf.runtime.job.data import SplitData, progress_logger
    from sm_imgclf.runtime.job.feed import Feeder

    feeder = Feeder(device)
    features = None
    report = progress_logger("train features", len(split))
    for done, (_, index, images) in enumerate(split.once(step), 1):
        batch = normalise(grow(feeder.batch(images), split.side), *normalising)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            found = model(batch).float().cpu()
        if features is None:
            features = torch.zeros((len(split), *found.shape[1:]))
        features[index] = found
        report(min(len(split), done * step))
    assert features is not None  # a split has at least one image
    return SplitData(features, split.labels, split.class_ids, split.class_names, split.side)


def _features(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    step: int,
    *,
    rows: int | None = None,
    on_host: bool = True,
    side: int = 0,
) -> torch.Tensor:
    """The backbone's features of ``images``, in the first rows of ``rows`` (zeros after).

    On the host by default (pinned when the backbone runs on a GPU), else on ``device``.
    Images held smaller than ``side`` are enlarged to it first.
    """
    import torch

    from sm_imgclf.runtime.images import grow, normalise
    from sm_imgclf.runtime.job.feed import Feeder

    feeder = Feeder(device)
    features = None
    for start in range(0, len(images), step):
        batch = normalise(grow(feeder.span(images, start, start + step), side), mean, std)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            found = model(batch).float()
        if features is None:  # filled in place: no second copy from concatenating
            features = torch.zeros(
                (rows or len(images), *found.shape[1:]),
                device="cpu" if on_host else device,
                pin_memory=on_host and feeder.pinned,
            )
        # From a GPU into pinned memory: queued, so the next batch need not wait.
        features[start : start + len(found)].copy_(found, non_blocking=True)
    if on_host and feeder.pinned:
        torch.cuda.synchronize(device)
    assert features is not None  # never called without images
    return features


def _gathered(block: torch.Tensor, total: int, world: int) -> torch.Tensor:
    """Every process's ``block`` (all the same size), in rank order: ``total`` rows on the host."""
    import torch
    import torch.distributed as dist

    blocks = [torch.empty_like(block) for _ in range(world)]
    dist.all_gather(blocks, block)
    return torch.cat(blocks)[:total].cpu()
