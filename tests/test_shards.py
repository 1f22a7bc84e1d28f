"""Datasets uploaded as tar shards: written once and the same, streamed by the job, resumable."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from torch import nn

import sm_imgclf as smi
from helpers.images import make_dataset, write_image
from sm_imgclf.data.manifest import DatasetManifest
from sm_imgclf.runtime.job import checkpoint
from sm_imgclf.runtime.job.control import StopRequested
from sm_imgclf.runtime.job.data import load_splits
from sm_imgclf.runtime.job.epoch import EpochBatches
from sm_imgclf.runtime.job.loop import Trainer
from sm_imgclf.runtime.job.stream import StreamedSplit

SMALL = 2**16  # a few dozen test images a shard


def upload(root: Path, store: Path, **options: object) -> smi.Channels:
    session = smi.LocalSession(root=store)
    return smi.ImageFolderDataset(root).upload(session, "d", shards=True, **options)  # type: ignore[arg-type]


def shard_files(store: Path, split: str = "train") -> dict[str, bytes]:
    found = sorted(store.rglob(f"d/{split}/shards/*.tar"))
    return {path.name: path.read_bytes() for path in found}


def manifest(store: Path, split: str = "train") -> DatasetManifest:
    return DatasetManifest.from_json(next(store.rglob(f"d/{split}/manifest.json")).read_bytes())


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    smi.digits_to_folder(folder / "all", size=16)
    return folder / "all"


def test_shards_hold_every_image_once_with_its_label_in_the_webdataset_layout(
    tmp_path: Path,
) -> None:
    make_dataset(tmp_path / "data", counts={"train": 30, "valid": 3})
    channels = upload(tmp_path / "data", tmp_path / "store", shard_bytes=SMALL)
    found = manifest(tmp_path / "store")
    assert len(found.shards) > 1
    assert sum(s.count for s in found.shards) == len(found.entries) == 90
    members = []
    folder = next((tmp_path / "store").rglob("d/train"))
    for shard in found.shards:  # in manifest order
        with tarfile.open(folder / shard.name) as tar:
            members += [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    images = [(name, data) for name, data in members if name.endswith(".jpg")]
    labels = {name.split(".")[0]: int(data) for name, data in members if name.endswith(".cls")}
    # Every image, in manifest order, labelled as the manifest says; keys are the MD5s.
    assert [name.split(".")[0] for name, _ in images] == [e.md5 for e in found.entries]
    assert [labels[e.md5] for e in found.entries] == [e.label for e in found.entries]
    first = found.shards[0]
    # MD5 order mixes the classes: the first shard is not one class's folder.
    assert len({e.label for e in found.entries[: first.count]}) > 1
    assert channels["train"].endswith("/d/train")


def test_webdataset_reads_the_shards_as_they_are(tmp_path: Path) -> None:
    webdataset = pytest.importorskip("webdataset")
    make_dataset(tmp_path / "data", counts={"train": 8})
    upload(tmp_path / "data", tmp_path / "store")
    path = next((tmp_path / "store").rglob("train/shards/*.tar"))
    samples = list(webdataset.WebDataset(str(path), shardshuffle=False))
    assert len(samples) == 24
    assert {int(s["cls"]) for s in samples} == {0, 1, 2}
    assert all(s["jpg"][:2] == b"\xff\xd8" for s in samples)  # the file as uploaded


def test_a_second_upload_sends_nothing_and_a_changed_image_sends_few_shards(
    tmp_path: Path,
) -> None:
    make_dataset(tmp_path / "data", counts={"train": 30})
    first = upload(tmp_path / "data", tmp_path / "store", shard_bytes=SMALL)
    before = shard_files(tmp_path / "store")
    again = upload(tmp_path / "data", tmp_path / "store", shard_bytes=SMALL)
    assert not again.summary.uploaded
    assert len(again.summary.skipped) == len(first.summary.uploaded) == len(before) > 1
    assert shard_files(tmp_path / "store") == before  # the same bytes


@pytest.mark.parametrize("change", ["added", "changed"])
def test_one_image_more_or_changed_leaves_the_other_shards_as_they_were(
    tmp_path: Path, change: str
) -> None:
    # Shards of a hundred images or so (real ones hold ~1,300: 128 MiB of 100 kB photos).
    # Fixed pixels: content-defined cuts fall back into place for most data, not all
    # (benchmarks/streaming.py measures how often one more shard is rewritten).
    make_dataset(tmp_path / "data", counts={"train": 300}, fixed=True)
    upload(tmp_path / "data", tmp_path / "store", shard_bytes=2**19)
    before = shard_files(tmp_path / "store")
    name = "new.jpg" if change == "added" else "img_7.jpg"
    write_image(tmp_path / "data" / "train" / "002.dog" / name, seed=12345)
    changed = upload(tmp_path / "data", tmp_path / "store", shard_bytes=2**19)
    after = {s.name.split("/")[-1] for s in manifest(tmp_path / "store").shards}
    new = after - set(before)
    # The shard it joined (and, changed, the one it left); the cuts fall back into place.
    assert len(before) >= 4
    assert 1 <= len(changed.summary.uploaded) == len(new) <= (1 if change == "added" else 2)


def test_upload_chooses_shards_by_itself_above_the_documented_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf.data import upload as uploading

    make_dataset(tmp_path / "data", counts={"train": 4})
    session = smi.LocalSession(root=tmp_path / "store")
    monkeypatch.setattr(uploading, "AUTO_SHARD_FILES", 10)
    smi.ImageFolderDataset(tmp_path / "data").upload(session, "d", shards=None)
    assert manifest(tmp_path / "store").shards
    monkeypatch.setattr(uploading, "AUTO_SHARD_FILES", 12)
    smi.ImageFolderDataset(tmp_path / "data").upload(session, "e", shards=None)
    assert not DatasetManifest.from_json(
        next((tmp_path / "store").rglob("e/train/manifest.json")).read_bytes()
    ).shards


def test_a_too_small_shard_size_is_refused_naming_it(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", counts={"train": 2})
    with pytest.raises(smi.ConfigurationError, match="shard_bytes"):
        upload(tmp_path / "data", tmp_path / "store", shard_bytes=100)


def streamed(tmp_path: Path, folder: Path, side: int = 16) -> dict[str, object]:
    channels = upload(folder, tmp_path / "store", shard_bytes=SMALL)
    paths = {name: Path(uri.removeprefix("file://")) for name, uri in channels.items()}
    return load_splits(paths, side, "none", workers=2)


def test_the_training_split_streams_and_the_evaluation_splits_are_held(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", counts={"train": 30, "valid": 4})
    splits = streamed(tmp_path, tmp_path / "data")
    train = splits["train"]
    assert isinstance(train, StreamedSplit)
    assert len(train) == 90 and len(train.shards) > 1
    valid = splits["valid"]
    assert valid.images.shape == (12, 3, 16, 16)  # type: ignore[attr-defined]


def test_an_epoch_gives_every_image_once_in_an_order_of_its_own(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", counts={"train": 30})
    train = streamed(tmp_path, tmp_path / "data")["train"]
    assert isinstance(train, StreamedSplit)
    seen = {}
    for epoch in (1, 2):
        plan = train.plan(epoch, seed=0, batch_size=8)
        batches = list(train.epoch(plan, 8))
        assert len(batches) == plan.steps
        seen[epoch] = torch.cat([index for _, index, _ in batches]).tolist()
        assert all(len(index) > 1 for _, index, _ in batches)  # batch norm needs two
        # Every image once, but a worker's lone last one, which waits for the next epoch.
        assert len(set(seen[epoch])) == len(seen[epoch]) >= 90 - len(plan.parts)
    once = torch.cat([index for _, index, _ in train.once(8)]).tolist()
    assert sorted(once) == list(range(90))  # the feature pass keeps every image
    assert seen[1] != seen[2]
    again = torch.cat([i for _, i, _ in train.epoch(train.plan(1, seed=0, batch_size=8), 8)])
    assert again.tolist() == seen[1]  # the seed and the epoch fix the order


def test_ranks_take_their_own_shards_and_the_same_number_of_steps(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", counts={"train": 60})
    train = streamed(tmp_path, tmp_path / "data")["train"]
    assert isinstance(train, StreamedSplit)
    plans = [train.plan(1, seed=0, batch_size=8, rank=r, world=2) for r in (0, 1)]
    assert plans[0].steps == plans[1].steps > 0
    shards = [{n for part in plan.parts for n in part} for plan in plans]
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(range(len(train.shards)))
    taken = [len(list(train.epoch(plan, 8))) for plan in plans]
    assert taken == [plans[0].steps] * 2
    with pytest.raises(smi.DatasetError, match="smaller shard_bytes"):
        train.plan(1, seed=0, batch_size=8, rank=0, world=len(train.shards) + 1)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def fit(train: object, valid: object, folder: Path, epochs: int = 8) -> dict[str, object]:
    hp = smi.Hyperparameters.from_dict(
        {
            "epochs": epochs,
            "batch_size": 32,
            "image_size": 16,
            "augmentation": "none",
            "lr": 0.005,
            "record_every": 0,
        }
    )
    run = Trainer(small_net(), hp, torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, folder, log=print)
    state = run.fit(train, valid)  # type: ignore[arg-type]
    return state["history"][-1]


def test_training_on_streamed_shards_learns_what_training_in_memory_learns(
    tmp_path: Path, digits: Path
) -> None:
    data = smi.ImageFolderDataset(digits).split(valid=0.2, test=0.0)
    session = smi.LocalSession(root=tmp_path / "store")
    results = {}
    for shards in (False, True):
        channels = data.upload(session, f"digits-{shards}", shards=shards, shard_bytes=SMALL)
        paths = {name: Path(uri.removeprefix("file://")) for name, uri in channels.items()}
        splits = load_splits(paths, 16, "none", workers=2)
        assert isinstance(splits["train"], StreamedSplit) == shards
        results[shards] = fit(splits["train"], splits["valid"], tmp_path / f"ck-{shards}")
    held, streamed_ = results[False]["valid:accuracy"], results[True]["valid:accuracy"]
    assert held > 0.8 and streamed_ > 0.8  # type: ignore[operator]
    assert abs(held - streamed_) < 0.06  # type: ignore[operator]


@pytest.mark.parametrize("shards", [False, True], ids=["in memory", "streamed"])
def test_a_job_stopped_mid_epoch_resumes_at_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits: Path, shards: bool
) -> None:
    data = smi.ImageFolderDataset(digits).split(valid=0.2, test=0.0)
    channels = data.upload(smi.LocalSession(root=tmp_path / "store"), "d", shards=shards)
    paths = {name: Path(uri.removeprefix("file://")) for name, uri in channels.items()}
    splits = load_splits(paths, 16, "none", workers=2)
    trained: list[int] = []
    real_done = EpochBatches.done

    def done(self: EpochBatches) -> None:
        real_done(self)
        trained.append(self.number)
        if len(trained) == 5 and not resumed:
            run.deadline.stop_asked = True  # what SIGTERM does

    monkeypatch.setattr(EpochBatches, "done", done)
    resumed = False
    lines: list[str] = []
    run = Trainer(
        small_net(),
        smi.Hyperparameters.from_dict(
            {
                "epochs": 1,
                "batch_size": 32,
                "image_size": 16,
                "augmentation": "none",
                "record_every": 0,
            }
        ),
        torch.device("cpu"),
        (0.5,) * 3,
        (0.25,) * 3,
        tmp_path / "ck",
        log=lines.append,
    )
    with pytest.raises(StopRequested):  # no whole epoch ended, so nothing to package
        run.fit(splits["train"], splits["valid"])
    kept = checkpoint.load(tmp_path / "ck")
    assert kept is not None and kept["epoch"] == 0
    assert kept["partial"]["epoch"] == 1 and kept["partial"]["batches"] == 5
    assert kept["partial"]["totals"][2] == 5 * 32  # the images it trained on, carried over
    assert any("stopped after batch 5" in line for line in lines)
    resumed, trained[:] = True, []
    again = Trainer(
        small_net(),
        run.hp,
        torch.device("cpu"),
        (0.5,) * 3,
        (0.25,) * 3,
        tmp_path / "ck",
        log=lines.append,
    )
    state = again.fit(splits["train"], splits["valid"])
    steps = again._position.per_epoch
    assert trained == list(range(6, steps + 1))  # the batches after the fifth, once each
    assert any(f"resumed epoch 1 at batch 5 of {steps}" in line for line in lines)
    assert state["best_epoch"] == 1 and [h["epoch"] for h in state["history"]] == [1]


def test_the_backbone_pass_streams_a_sharded_split_once_into_held_features(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from sm_imgclf.runtime.job.backbone_pass import to_features
    from sm_imgclf.runtime.job.data import SplitData, load_split
    from sm_imgclf.runtime.models import build_model

    make_dataset(tmp_path / "data", counts={"train": 20})
    splits = streamed(tmp_path, tmp_path / "data", side=32)
    train = splits["train"]
    assert isinstance(train, StreamedSplit)
    held = load_split("train", train.shards[0][0].parent.parent, 32, shorter=37, workers=2)
    model, head = build_model("resnet18", 3)
    model.eval()
    found: dict[str, object] = {"train": replace(train)}
    expected: dict[str, object] = {"train": held}
    for chosen in (found, expected):
        to_features(model, head, chosen, torch.device("cpu"), (0.5,) * 3, (0.25,) * 3, 16)  # type: ignore[arg-type]
    features = found["train"]
    assert isinstance(features, SplitData) and features.images.shape == (60, 512)
    assert torch.allclose(features.images, expected["train"].images, atol=1e-5)  # type: ignore[attr-defined]
    assert torch.equal(features.labels, held.labels)


@pytest.mark.slow
def test_a_local_job_trains_on_a_sharded_upload_and_packages_a_model(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", counts={"train": 20, "valid": 4, "test": 4})
    session = smi.LocalSession(root=tmp_path / "store")
    channels = smi.ImageFolderDataset(tmp_path / "data").upload(
        session, "d", shards=True, shard_bytes=SMALL
    )
    job = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        hyperparameters={"epochs": 2, "batch_size": 16, "image_size": 32, "record_every": 0},
    ).fit(channels, logs=False)
    assert job.status == "Completed" and job.model_uri
    logs = "\n".join(job.logs())
    assert "train: 60 images in" in logs and "streamed each epoch" in logs
    assert "test:accuracy=" in logs
