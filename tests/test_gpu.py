"""The CUDA path end to end: run by ``nox -s gpu`` where a GPU is, skipped elsewhere.

What a CPU can prove about this path lives in ``test_cuda_path.py``; these tests
need the device itself: AMP training with the checks recorder on, a job over
two GPUs under torchrun, the serving handler on a GPU, and GPU samples in the
profiler's records.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sm_imgclf as smi
from sm_imgclf.runtime.serving.forward import AUTOCAST_TOLERANCE
from sm_imgclf.runtime.serving.handler import Batch, model_fn, predict_fn

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: run `nox -s gpu` on a machine with one",
    ),
]
HP = {"image_size": 64, "epochs": 2, "batch_size": 32, "record_every": 5, "lr": 0.01}


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory) -> smi.Channels:
    root = tmp_path_factory.mktemp("gpu")
    smi.digits_to_folder(root / "images", limit_per_class=40)
    session = smi.LocalSession(root / "uploads")
    return (
        smi.ImageFolderDataset(root / "images")
        .split(valid=0.2, seed=0)
        .upload(session, "digits", progress=False)
    )


@pytest.fixture(scope="module")
def amp_job(channels: smi.Channels, tmp_path_factory: pytest.TempPathFactory) -> smi.TrainingJob:
    session = smi.LocalSession(tmp_path_factory.mktemp("session"))
    est = smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, hyperparameters=HP
    )
    return est.fit(channels, logs=False)


def test_amp_training_with_the_recorder_raises_no_false_alarm(amp_job: smi.TrainingJob) -> None:
    log = "\n".join(amp_job.logs())
    assert amp_job.status == "Completed", amp_job.failure_reason
    assert "on cuda" in log  # the job's first line names its device
    with smi.DebugProfileAnalyzer.from_job(amp_job) as analyzer:
        fired = {r.name for r in analyzer.rules() if r.triggered}
        assert "exploding_tensor" not in fired, fired  # skipped AMP steps are left out


def test_the_profiler_samples_the_gpu_and_names_its_source(amp_job: smi.TrainingJob) -> None:
    with smi.DebugProfileAnalyzer.from_job(amp_job) as analyzer:
        system = analyzer.records.system
    sampled = [s for s in system if s.get("gpu_memory") is not None]
    assert sampled, "no GPU figures in the profiler's samples"
    assert {s["gpu_source"] for s in sampled} <= {"nvml", "nvidia-smi", "torch.cuda"}


def test_serving_on_the_gpu_matches_the_cpu(
    amp_job: smi.TrainingJob, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf._archive import safe_extract

    package = safe_extract(
        amp_job.model_uri.removeprefix("file://"),  # type: ignore[union-attr]
        tmp_path / "package",
    )
    on_gpu = model_fn(str(package))
    assert on_gpu.device.type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = model_fn(str(package))
    images = torch.randint(
        0, 255, (8, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    gpu = predict_fn(Batch(images, 3), on_gpu)["probabilities"]
    cpu = predict_fn(Batch(images, 3), on_cpu)["probabilities"]
    assert "batch 16" in on_gpu.forward.reason  # measured on the GPU when it loaded
    if on_gpu.forward.path == "autocast":  # float16 chosen: its own bound, checked at load
        assert (gpu - cpu).abs().max() <= AUTOCAST_TOLERANCE
    else:
        torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs for torchrun")
def test_a_job_over_two_gpus_under_torchrun(channels: smi.Channels, tmp_path: Path) -> None:
    folders = {n: u.removeprefix("file://") for n, u in channels.items()}
    env = {
        **os.environ,
        "SM_CHANNELS": '["train", "valid"]',
        "SM_CHANNEL_TRAIN": folders["train"],
        "SM_CHANNEL_VALID": folders["valid"],
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "out"),
        "SM_IMGCLF_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "SM_NUM_GPUS": "2",
    }
    argv = [
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--trainable",
        "all",
        *[part for k, v in HP.items() for part in (f"--{k}", str(v))],
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "sm_imgclf.runtime.job",
            *argv,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "rank 1 of 2 (nccl)" in log and log.count("test ") <= 1
    assert log.count("here, shared by 2)") >= 4  # one decode for the host's two processes
    assert (tmp_path / "model" / "manifest.json").is_file()


@pytest.mark.parametrize("policy", ["none", "light", "strong"])
def test_augmenting_on_the_gpu_matches_the_cpu(policy: str) -> None:
    from sm_imgclf.runtime.job.augment import augment

    batch = torch.randint(
        0, 256, (16, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    cpu = augment(batch, policy, 32, torch.Generator().manual_seed(3))
    gpu = augment(batch.cuda(), policy, 32, torch.Generator().manual_seed(3))
    assert gpu.device.type == "cuda" and gpu.dtype == torch.uint8
    # Resizing and jitter round on each device in their own way: a level at most.
    worst = (gpu.cpu().int() - cpu.int()).abs().max().item()
    assert worst <= (1 if policy == "strong" else 0), worst


def test_pinned_batches_arrive_whole_while_the_gpu_is_busy() -> None:
    from sm_imgclf.runtime.job.feed import Feeder

    images = torch.randint(0, 256, (500, 3, 32, 32), dtype=torch.uint8)
    feed = Feeder(torch.device("cuda"))
    order = torch.randperm(500)
    torch.cuda._sleep(200_000_000)  # the GPU busy: every copy waits in its queue
    moved = [feed.rows(images, order[i : i + 64]) for i in range(0, 500, 64)]
    for start, batch in zip(range(0, 500, 64), moved, strict=True):
        assert torch.equal(batch.cpu(), images[order[start : start + 64]])


def test_every_collective_runs_on_nccl(tmp_path: Path) -> None:
    """NCCL reduces no CPU tensor: one stray CPU total would fail the first epoch's end."""
    import torch.distributed as dist
    from torch import nn

    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.loop import Trainer

    dist.init_process_group(
        "nccl",
        init_method=f"file://{tmp_path / 'store'}",
        rank=0,
        world_size=1,
        device_id=torch.device("cuda", 0),
    )
    try:
        classes = ("a", "b")
        inputs = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        data = SplitData(inputs, (inputs[:, 0] > 0).long(), classes, classes)
        hyper = smi.Hyperparameters.from_dict(
            {"epochs": 2, "batch_size": 16, "augmentation": "none", "record_every": 0}
        )
        model = nn.parallel.DistributedDataParallel(nn.Linear(8, 2).cuda())
        run = Trainer(
            model,
            hyper,
            torch.device("cuda", 0),
            (0.5,) * 3,
            (0.25,) * 3,
            tmp_path / "checkpoints",
            log=lambda line: None,
            features=True,
            distributed=(0, 1),
        )
        state = run.fit(data, data)
    finally:
        dist.destroy_process_group()
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["history"][-1]["train:accuracy"] > 0.5


def test_training_steps_never_wait_for_the_host(tmp_path: Path) -> None:
    """Pinned copies, augmentation on the GPU, device totals and fused optimizers: the CPU
    queues step after step, and only the epoch's end reads from the GPU."""
    import warnings

    from torch import nn

    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.loop import Trainer
    from sm_imgclf.runtime.models import build_model

    model, _ = build_model("resnet18", 3)
    images = torch.randint(
        0, 256, (160, 3, 72, 72), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    data = SplitData(images, torch.arange(160) % 3, ("a", "b", "c"), ("a", "b", "c"))
    hyper = smi.Hyperparameters.from_dict(
        {"batch_size": 16, "image_size": 64, "augmentation": "strong", "record_every": 0}
    )
    run = Trainer(
        model.cuda(),
        hyper,
        torch.device("cuda", 0),
        (0.5,) * 3,
        (0.25,) * 3,
        tmp_path / "checkpoints",
        log=lambda line: None,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = nn.CrossEntropyLoss()
    run._train_epoch(data, 1, optimizer, loss_fn, scaler)  # warm-up: allocations, pinning
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run._train_epoch(data, 2, optimizer, loss_fn, scaler)  # ten steps
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 3, syncs  # the epoch's totals, not ten steps' worth


def test_evaluating_before_training_then_training(tmp_path: Path) -> None:
    """Batches made under inference mode first, then for training: both on the GPU."""
    from torch import nn

    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.loop import Trainer

    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    data = SplitData(images, torch.arange(48) % 2, ("a", "b"), ("a", "b"))
    hyper = smi.Hyperparameters.from_dict(
        {"batch_size": 16, "image_size": 32, "epochs": 1, "augmentation": "none", "record_every": 0}
    )
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).cuda()
    run = Trainer(
        model,
        hyper,
        torch.device("cuda", 0),
        (0.5,) * 3,
        (0.25,) * 3,
        tmp_path / "checkpoints",
        log=lambda line: None,
    )
    before = run.evaluate(data)
    state = run.fit(data, data)
    assert 0 <= before["accuracy"] <= 1 and len(state["history"]) == 1


def test_the_feature_pass_on_the_gpu_gives_the_cpus_features(tmp_path: Path) -> None:
    from sm_imgclf.runtime.job.backbone_pass import to_features
    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.models import build_model

    images = torch.randint(
        0, 256, (100, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    found = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model, head = build_model("resnet18", 2)
        splits = {"train": SplitData(images.clone(), torch.arange(100) % 2, ("a", "b"), ("a", "b"))}
        to_features(
            model.to(device), head, splits, torch.device(device), (0.5,) * 3, (0.25,) * 3, 32
        )
        found.append(splits["train"].images)
    assert found[1].device.type == "cpu" and found[1].shape == found[0].shape == (100, 512)
    torch.testing.assert_close(found[1], found[0], rtol=2e-2, atol=2e-2)  # AMP on the GPU
