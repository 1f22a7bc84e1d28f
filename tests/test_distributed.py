"""Two gloo ranks on this machine: identical weights everywhere, and stops that end every rank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import sm_imgclf as smi
from helpers.ranks import run_two
from sm_imgclf.runtime.job.contract import JobEnvironment
from sm_imgclf.runtime.job.data import SplitData

pytestmark = pytest.mark.slow
CLASSES = tuple(str(d) for d in range(10))
STOP_AT = 3  # the step after which rank 0's monitor asks to stop


def digits(count: int) -> SplitData:
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))[:count]
    images = torch.from_numpy((data.images[order] * (255 / 16)).astype(np.uint8))
    images = torch.nn.functional.interpolate(
        images.unsqueeze(1).repeat(1, 3, 1, 1).float(), size=16
    ).to(torch.uint8)
    return SplitData(images, torch.from_numpy(data.target[order]).long(), CLASSES, CLASSES)


class StoppingMonitor:
    """Stands in for rank 0's recorder: asks to stop after step ``STOP_AT``."""

    stop = False

    def start(self) -> None: ...
    def begin(self, step: int, model: Any) -> bool:
        return False

    def mark(self, recorded: bool) -> None: ...
    def gradients(self, *args: Any) -> None: ...
    def epoch(self, metrics: dict[str, Any]) -> None: ...
    def close(self) -> None: ...

    def end(self, step: int, model: Any, recorded: bool, *, amp_skipped: bool = False) -> None:
        self.stop = step >= STOP_AT


def rank_main(rank: int, port: int, folder: str, trainable: str, stop: bool) -> None:
    import os

    import torch.distributed as dist

    from sm_imgclf.runtime.job.setup import prepare

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    hp = smi.Hyperparameters.from_dict(
        {
            "epochs": 2,
            "batch_size": 16,
            "image_size": 16,
            "augmentation": "none",
            "record_every": 0,
            "lr": 0.01,
        }
    )
    env = JobEnvironment(
        {},
        Path(folder) / f"model-{rank}",
        Path(folder) / f"out-{rank}",
        Path(folder) / f"checkpoints-{rank}",
        0,
        ("a", "b"),
        "ab"[rank],
    )
    settings = {"model": "resnet18", "weights": "none", "trainable": (trainable,)}
    splits = {"train": digits(128), "valid": digits(32)}
    trainer, _, model = prepare(settings, hp, splits, torch.device("cpu"), env, (rank, 2))
    steps = [0]
    trainer.model.register_forward_pre_hook(
        lambda module, args: steps.__setitem__(0, steps[0] + module.training)
    )
    if stop:  # ranks agree on stopping where the recorder runs: every step here
        trainer.hp = smi.Hyperparameters.from_dict({**hp.to_dict(), "record_every": 1})
    if stop and rank == 0:
        trainer.monitor = StoppingMonitor()
    trainer.fit(splits["train"], splits["valid"])
    torch.save({"weights": model.state_dict(), "steps": steps[0]}, Path(folder) / f"rank-{rank}.pt")
    dist.destroy_process_group()


def run_ranks(tmp_path: Path, trainable: str, stop: bool = False) -> list[dict[str, Any]]:
    return run_two(rank_main, tmp_path, str(tmp_path), trainable, stop)


@pytest.mark.parametrize("trainable", ["head", "all"])
def test_every_rank_ends_with_the_same_weights(tmp_path: Path, trainable: str) -> None:
    first, second = run_ranks(tmp_path, trainable)
    assert first["weights"].keys() == second["weights"].keys()
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name]), name


def test_a_stop_on_one_rank_ends_both_at_the_same_step(tmp_path: Path) -> None:
    first, second = run_ranks(tmp_path, "all", stop=True)
    assert first["steps"] == second["steps"] == STOP_AT


def backbone(rows: list[int]) -> tuple[torch.nn.Module, Any]:
    from sm_imgclf.runtime.models import build_model

    torch.manual_seed(0)
    model, head = build_model("resnet18", 10)
    model.register_forward_pre_hook(lambda module, args: rows.append(len(args[0])))
    return model, head


def features_main(rank: int, port: int, folder: str) -> None:
    import os

    import torch.distributed as dist

    from sm_imgclf.runtime.job.backbone_pass import to_features

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows: list[int] = []
    model, head = backbone(rows)
    # 7: blocks of 4 and 3; 1: a block and none (which still learns the features' shape)
    splits = {"train": digits(90), "valid": digits(7), "test": digits(1)}
    to_features(model, head, splits, torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, 16, (rank, 2))
    torch.save(
        {**{name: split.images for name, split in splits.items()}, "rows": sum(rows)},
        Path(folder) / f"rank-{rank}.pt",
    )
    dist.destroy_process_group()


def test_each_process_runs_the_backbone_over_its_block_and_all_get_every_feature(
    tmp_path: Path,
) -> None:
    from sm_imgclf.runtime.job.backbone_pass import to_features

    first, second = run_two(features_main, tmp_path, str(tmp_path))
    rows: list[int] = []
    model, head = backbone(rows)
    alone = {"train": digits(90), "valid": digits(7), "test": digits(1)}
    to_features(model, head, alone, torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, 16)
    assert (first["rows"], second["rows"], sum(rows)) == (45 + 4 + 1, 45 + 3 + 1, 98)
    for found in (first, second):
        for name in ("train", "valid", "test"):
            torch.testing.assert_close(found[name], alone[name].images, rtol=1e-4, atol=1e-5)
