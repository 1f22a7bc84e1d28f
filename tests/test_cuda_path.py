"""What the CUDA path needs, proven on the CPU: one loss, skipped AMP steps, scaler state,
each serving worker on its own GPU."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import sm_imgclf as smi
from sm_imgclf.runtime.checks.monitor import Monitor
from sm_imgclf.runtime.checks.records import RECORDS, read_records
from sm_imgclf.runtime.checks.rules import evaluate as run_rules
from sm_imgclf.runtime.job import checkpoint
from sm_imgclf.runtime.job.data import SplitData
from sm_imgclf.runtime.job.loop import Trainer, class_weights
from sm_imgclf.runtime.serving.handler import serving_device

CLASSES = ("a", "b", "c")


def features(n: int = 70, seed: int = 0) -> SplitData:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.zeros(40), torch.ones(20), torch.full((n - 60,), 2)]).long()
    inputs = torch.randn(n, 8, generator=generator) + labels[:, None].float()
    return SplitData(inputs, labels, CLASSES, CLASSES)


def trainer(tmp_path: Path, monitor: Monitor | None = None, **hp: object) -> Trainer:
    torch.manual_seed(0)
    settings = {
        "epochs": 2,
        "batch_size": 16,
        "augmentation": "none",
        "record_every": 1,
        "class_weighting": "balanced",
        "label_smoothing": 0.2,
        **hp,
    }
    return Trainer(
        nn.Linear(8, 3),
        smi.Hyperparameters.from_dict(settings),
        torch.device("cpu"),
        (0.5,) * 3,
        (0.25,) * 3,
        tmp_path / "checkpoints",
        log=lambda line: None,
        features=True,
        monitor=monitor,
    )


def test_valid_loss_is_the_training_loss_function(tmp_path: Path) -> None:
    data = features()
    run = trainer(tmp_path)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(data, "balanced"), label_smoothing=0.2)
    found = run.evaluate(data, loss_fn)["loss"]
    with torch.no_grad():  # the same batches and weighting as the evaluation
        step = 64
        expected = sum(
            float(loss_fn(run.model(data.images[i : i + step]), data.labels[i : i + step]))
            * len(data.labels[i : i + step])
            for i in range(0, len(data), step)
        ) / len(data)
        plain = float(torch.nn.functional.cross_entropy(run.model(data.images), data.labels))
    assert found == pytest.approx(expected, rel=1e-5)
    assert abs(found - plain) > 1e-3  # class weights and smoothing changed it: both counted


class SkippingScaler:
    """A gradient scaler that found inf gradients: it skips the step and lowers its scale."""

    def __init__(self) -> None:
        self.scale_value, self.steps = 1024.0, 0

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self.scale_value

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, optimizer: object) -> None:
        return None

    def step(self, optimizer: object) -> None:
        return None  # skipped, as GradScaler skips a step with inf gradients

    def update(self) -> None:
        self.scale_value /= 2


def inf_step(tmp_path: Path, scaler: object) -> smi.DebugProfileAnalyzer:
    hyper = smi.Hyperparameters.from_dict(
        {"augmentation": "none", "record_every": 1, "batch_size": 16}
    )
    meta = {
        "model": "test",
        "class_names": list(CLASSES),
        "train_counts": [40, 20, 10],
        "steps_per_epoch": 5,
    }
    monitor = Monitor(tmp_path / "debug", hyper, meta, torch.device("cpu"), lambda line: None)
    run = trainer(tmp_path, monitor)
    data = features()
    optimizer = torch.optim.SGD(run.model.parameters(), lr=0.1)

    def inf_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, labels) * float("inf")

    try:
        monitor.start()
        run._step(data.images[:16], data.labels[:16], 1, 1, optimizer, inf_loss, scaler)
    finally:
        monitor.close()
    return smi.DebugProfileAnalyzer(tmp_path)


def test_a_step_amp_skipped_for_inf_gradients_raises_no_alarm(tmp_path: Path) -> None:
    analyzer = inf_step(tmp_path / "skipped", SkippingScaler())
    records = read_records(tmp_path / "skipped" / "debug")
    assert records.steps == [] and records.skipped[0]["amp_skipped"] is True
    assert records.skipped[0]["nonfinite"]  # the gradients were inf, and recorded as such
    assert "exploding_tensor" not in {r.name for r in analyzer.rules() if r.triggered}
    assert (tmp_path / "skipped" / "debug" / RECORDS).is_file()


def test_the_same_inf_step_applied_does_raise_the_alarm(tmp_path: Path) -> None:
    plain = torch.amp.GradScaler("cuda", enabled=False)  # what CPU training uses: no skipping
    analyzer = inf_step(tmp_path / "applied", plain)
    assert "exploding_tensor" in {r.name for r in analyzer.rules() if r.triggered}
    results = run_rules(read_records(tmp_path / "applied" / "debug"))
    assert any(r.name == "exploding_tensor" and r.triggered for r in results)


def test_the_scaler_state_is_checkpointed_and_restored(tmp_path: Path) -> None:
    run = trainer(tmp_path)
    run.fit(features(), None)
    saved = checkpoint.load(tmp_path / "checkpoints")
    assert saved is not None and "scaler" in saved
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=4096.0)
    state = {
        "epoch": 2,
        "history": [],
        "best_state": None,
        "best": None,
        "best_epoch": 0,
        "since_best": 0,
        "model": run.model.state_dict(),
        "optimizer": torch.optim.SGD(run.model.parameters(), lr=0.1).state_dict(),
        "scheduler": torch.optim.lr_scheduler.LambdaLR(
            torch.optim.SGD(run.model.parameters(), lr=0.1), lambda e: 1.0
        ).state_dict(),
        "scaler": {**scaler.state_dict(), "scale": 256.0},
    }
    checkpoint.save(tmp_path / "other", state)
    again = trainer(tmp_path)
    again.checkpoint_dir = tmp_path / "other"
    optimizer = torch.optim.SGD(again.model.parameters(), lr=0.1)
    restored = torch.amp.GradScaler("cpu", enabled=True)
    again._resume(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0), restored)
    assert restored.state_dict()["scale"] == 256.0


def test_each_serving_worker_gets_the_gpu_its_context_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = types.SimpleNamespace(system_properties={"gpu_id": 3, "model_dir": "/opt/ml"})
    assert serving_device(context) == torch.device("cpu")  # no CUDA here: the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert serving_device(context) == torch.device("cuda:3")
    assert serving_device(None) == torch.device("cuda")
    assert serving_device(types.SimpleNamespace(system_properties={})) == torch.device("cuda")


def test_the_inference_toolkit_passes_its_context_to_model_fn() -> None:
    import inspect

    from sm_imgclf.runtime.serving.handler import model_fn

    # AWS's toolkit hands the context to a model_fn of two parameters, and only then.
    assert len(inspect.signature(model_fn).parameters) == 2


PEAK = """
import resource, sys
from pathlib import Path
import torch
from sm_imgclf.runtime.job.data import load_split
folder, side = Path(sys.argv[1]), int(sys.argv[2])
load_split("warm", folder / "warm", side, shorter=side, workers=2)  # imports, pools, buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
split = load_split("train", folder / "train", side, shorter=side, workers=2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, split.images.numel())
"""


@pytest.mark.slow
def test_the_decode_once_cache_costs_one_copy_of_host_memory(tmp_path: Path) -> None:
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("warm", 8), ("train", 1200)):
        folder = tmp_path / split / "only"
        folder.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (136, 136, 3), dtype=np.uint8)).save(
                folder / f"{i}.png"
            )
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(tmp_path), "128"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    grown, cache = (int(v) for v in done.stdout.split()[-2:])
    # Stacking a list of decoded images would grow the peak by two copies of the cache.
    assert grown < 1.5 * cache, (grown, cache)


def test_evaluation_out_of_memory_gives_the_same_advice(tmp_path: Path) -> None:
    class Hungry(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    run = trainer(tmp_path)
    run.model = Hungry()
    with pytest.raises(smi.ConfigurationError, match=r"evaluation batch=64 .* batch_size=32"):
        run.evaluate(features())


def test_gpu_figures_come_from_nvidia_smi_without_nvml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf.runtime.checks.gpu import GpuProbe

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '37, 1024, 16384'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # no NVML binding
    probe = GpuProbe()
    assert probe.source == "nvidia-smi"
    assert probe.sample() == {"gpu_util": 37.0, "gpu_memory": 6.25, "gpu_source": "nvidia-smi"}


def test_torch_memory_is_the_last_gpu_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sm_imgclf.runtime.checks.gpu import GpuProbe

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    assert GpuProbe().source is None  # no GPU at all: nothing sampled
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (3 * 2**30, 4 * 2**30))
    probe = GpuProbe()
    assert probe.source == "torch.cuda"
    assert probe.sample() == {"gpu_memory": 25.0, "gpu_source": "torch.cuda"}


def test_the_report_says_where_gpu_figures_came_from(tmp_path: Path) -> None:
    from sm_imgclf.debug.insights import insights
    from sm_imgclf.debug.report import text_summary
    from sm_imgclf.runtime.checks.records import Records

    records = Records(
        meta={"model": "m", "class_names": list(CLASSES)},
        system=[
            {
                "t": 1.0,
                "cpu": 50.0,
                "memory": 40.0,
                "rss_mb": 900.0,
                "gpu_memory": 30.0,
                "gpu_source": "torch.cuda",
            }
        ],
    )
    found = insights(records)
    gpu = next(i for i in found if i.name == "gpu_underused")
    assert "unknown" in gpu.message and not gpu.triggered
    assert "GPU figures from torch.cuda" in text_summary("job", records, [], found)


def test_each_torchrun_process_decodes_with_its_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sm_imgclf.runtime.job import data

    monkeypatch.setattr(data.os, "cpu_count", lambda: 16)
    assert data.decode_workers(0, {"LOCAL_WORLD_SIZE": "4"}) == 4  # a 4-GPU host
    assert data.decode_workers(0, {}) == 16  # one process: every core
    assert data.decode_workers(0, {"LOCAL_WORLD_SIZE": "32"}) == 1
    assert data.decode_workers(3, {"LOCAL_WORLD_SIZE": "4"}) == 3  # num_workers wins


def test_a_training_epoch_reads_its_totals_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-step reads would make a GPU wait for the host after every step."""
    reads = []
    for name in ("item", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, _o=original, _n=name: reads.append(_n) or _o(self)
        )
    trained = trainer(tmp_path, record_every=0)
    data = features(n=160)
    optimizer = torch.optim.SGD(trained.model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    metrics = trained._train_epoch(data, 1, optimizer, torch.nn.CrossEntropyLoss(), scaler)
    assert len(reads) <= 2, reads  # the loss total and the correct count, at the end
    assert 0 < metrics["loss"] < 10 and 0 <= metrics["accuracy"] <= 1


class FakeClock:
    """Stands in for ``time.perf_counter``: moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


def test_the_recorders_own_work_is_left_out_of_the_step_phases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sm_imgclf.runtime.checks import monitor as monitor_module

    clock = FakeClock()
    monkeypatch.setattr(monitor_module, "time", clock)
    hyper = smi.Hyperparameters.from_dict({"record_every": 1})
    monitor = Monitor(
        tmp_path / "debug", hyper, {"model": "test"}, torch.device("cpu"), lambda line: None
    )
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    slow_watch, slow_gradients = monitor.recorder.watch, monitor.recorder.gradients

    def watch(*args: object) -> None:
        clock.now += 2.0  # recording set-up, inside the data phase
        slow_watch(*args)  # type: ignore[arg-type]

    def gradients(*args: object) -> dict:
        clock.now += 5.0  # recording the gradients, inside the optimizer phase
        return slow_gradients(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(monitor.recorder, "watch", watch)
    monkeypatch.setattr(monitor.recorder, "gradients", gradients)
    try:
        monitor.start()
        clock.now += 0.5  # preparing the batch
        recorded = monitor.begin(1, model)
        model(torch.randn(3, 4)).sum().backward()
        clock.now += 0.25  # forward
        monitor.mark(recorded)
        clock.now += 0.125  # backward
        monitor.mark(recorded)
        monitor.gradients(model, 1, 1, 0.7)
        clock.now += 0.0625  # the optimizer's own step
        monitor.end(1, model, recorded)
        monitor.epoch({"epoch": 1, "train:loss": 0.7})
    finally:
        monitor.close()
    records = read_records(tmp_path / "debug")
    (split,) = records.splits
    assert (split["data"], split["forward"], split["backward"], split["optimizer"]) == (
        0.5,
        0.25,
        0.125,
        0.0625,
    )
    assert split["recorder"] == 7.0
    assert records.durations[0]["seconds"] == [0.9375]  # the step without its recording


def test_a_recorded_steps_forward_pass_never_waits_for_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read inside a ReLU hook would stall a GPU's forward pass once per ReLU."""
    hyper = smi.Hyperparameters.from_dict({"record_every": 1})
    monitor = Monitor(
        tmp_path / "debug", hyper, {"model": "test"}, torch.device("cpu"), lambda line: None
    )
    model = nn.Sequential(*[layer for _ in range(6) for layer in (nn.Linear(8, 8), nn.ReLU())])
    reads: list[str] = []
    for name in ("item", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _o=original, _n=name: reads.append(_n) or _o(self, *a),
        )
    try:
        monitor.start()
        recorded = monitor.begin(1, model)
        model(torch.randn(5, 8)).pow(2).mean().backward()
        assert recorded and reads == []  # the forward pass read nothing
        monitor.mark(recorded)
        monitor.mark(recorded)
        monitor.gradients(model, 1, 1, 0.5)
        monitor.end(1, model, recorded)
    finally:
        monitor.close()
    # ReLU shares, gradient sums and weight sums: one read each, not one per tensor.
    assert len(reads) <= 3, reads
    (step,) = read_records(tmp_path / "debug").steps
    assert set(step["relu_zero"]) == {str(i) for i in range(1, 12, 2)}
    assert all(0 <= share <= 1 for share in step["relu_zero"].values())
    assert step["grad_norm"]["0"] > 0 and step["weight"]["0"]["std"] > 0


def test_the_data_advice_names_what_a_decode_once_job_can_change() -> None:
    from sm_imgclf.debug.insights import insights
    from sm_imgclf.runtime.checks.records import Records

    records = Records()
    records.splits = [
        {
            "type": "split",
            "step": s,
            "data": 0.6,
            "forward": 0.1,
            "backward": 0.2,
            "optimizer": 0.1,
            "recorder": 0.0,
        }
        for s in (1, 2)
    ]
    (found,) = [i for i in insights(records) if i.name == "data_bottleneck"]
    assert found.triggered and "num_workers does not touch" in found.suggestion
    assert "Raise num_workers" not in found.suggestion


def test_evaluation_reads_its_totals_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    for name in ("item", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _o=original, _n=name: reads.append(_n) or _o(self, *a),
        )
    run = trainer(tmp_path, record_every=0)
    data = features(n=300)  # five evaluation batches
    metrics = run.evaluate(data)
    assert reads == ["tolist", "tolist"], reads  # the totals, then the confusion counts
    assert sum(map(sum, run.confusion)) == 300
    assert metrics["accuracy"] == pytest.approx(sum(run.confusion[i][i] for i in range(3)) / 300)


def uint8_split(n: int = 12, side: int = 20) -> SplitData:
    images = torch.randint(
        0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    return SplitData(images, torch.arange(n) % 3, CLASSES, CLASSES)


@pytest.mark.parametrize("policy", ["none", "light", "strong"])
def test_augmenting_after_the_copy_gives_the_batch_augmenting_before_it_gives(
    tmp_path: Path, policy: str
) -> None:
    """On a GPU the batch is augmented after it crosses; the pixels must not change."""
    data = uint8_split()
    batches = []
    for on_device in (False, True):
        run = trainer(tmp_path, augmentation=policy, image_size=16)
        run.features, run.augment_on_device = False, on_device
        generator = torch.Generator().manual_seed(7)
        batches.append(run._batches.train(data, torch.tensor([3, 0, 7, 5]), generator))
    assert batches[0].shape == (4, 3, 16, 16)
    torch.testing.assert_close(batches[0], batches[1], rtol=0, atol=0)


def test_the_feeder_hands_over_exactly_the_rows_asked_for() -> None:
    from sm_imgclf.runtime.job.feed import Feeder

    data = uint8_split()
    feed = Feeder(torch.device("cpu"))
    assert not feed.pinned  # pinned buffers only towards a GPU
    index = torch.tensor([4, 1, 9])
    assert torch.equal(feed.rows(data.images, index), data.images[index])
    assert torch.equal(feed.span(data.labels, 8, 20), data.labels[8:])


def test_channels_last_training_learns_what_the_default_layout_learns(tmp_path: Path) -> None:
    data = uint8_split(n=48, side=16)
    runs = []
    for last in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)
        )
        hyper = smi.Hyperparameters.from_dict(
            {
                "epochs": 2,
                "batch_size": 16,
                "image_size": 16,
                "augmentation": "light",
                "record_every": 0,
            }
        )
        run = Trainer(
            model,
            hyper,
            torch.device("cpu"),
            (0.5,) * 3,
            (0.25,) * 3,
            tmp_path / f"checkpoints-{last}",
            log=lambda line: None,
            channels_last=last,
        )
        runs.append(run.fit(data, data))
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last) == last
    for plain, last in zip(runs[0]["history"], runs[1]["history"], strict=True):
        assert last["train:loss"] == pytest.approx(plain["train:loss"], rel=1e-4)
        assert last["valid:loss"] == pytest.approx(plain["valid:loss"], rel=1e-4)


def test_normalising_constants_are_made_once_and_serve_gradients_too() -> None:
    from sm_imgclf.runtime import images

    batch = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    with torch.inference_mode():  # first made while serving ...
        served = images.normalise(batch, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    made = images._channel_constants((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), torch.device("cpu"))
    assert (
        made[0]
        is images._channel_constants((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), torch.device("cpu"))[0]
    )  # not per batch
    pixels = batch.float().requires_grad_()  # ... then used where gradients flow through
    out = (pixels / 255 - made[0]) / made[1]
    out.sum().backward()
    assert pixels.grad is not None and torch.allclose(out.detach(), served)


def test_ranks_agree_on_stopping_only_where_the_recorder_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agreeing is a collective and a read: once a step, it would stall every GPU step."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    calls = []
    reduce = dist.all_reduce
    monkeypatch.setattr(
        dist,
        "all_reduce",
        lambda tensor, *a, **k: calls.append(tensor.device) or reduce(tensor, *a, **k),
    )
    try:
        run = trainer(tmp_path, record_every=4, epochs=1)
        run.distributed = (0, 1)
        run.fit(features(n=160), None)  # 10 steps: recorded at 1, 4 and 8
    finally:
        dist.destroy_process_group()
    # Three steps, the epoch's end, and the epoch's totals: not ten steps' worth.
    assert len(calls) == 5, calls
    assert set(calls) == {run.device}


def test_the_operator_window_avoids_recorded_steps() -> None:
    from sm_imgclf.runtime.checks.profiler import window_start

    def every(n: int) -> Callable[[int], bool]:
        return lambda step: step == 1 or step % n == 0

    assert window_start(every(25)) == 3  # steps 3-5: the default records none of them
    assert window_start(every(5)) == 6  # 5 is recorded: 6-8
    assert window_start(every(2)) == 3  # no three unrecorded steps in a row: the first
    assert window_start(None) == 3
