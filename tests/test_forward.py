"""The server's forward path: chosen by measurement when the model loads, same outputs."""

from __future__ import annotations

import sys
import time

import pytest
import torch
import torchvision

from sm_imgclf.runtime.serving import forward
from sm_imgclf.runtime.serving.forward import choose


def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=7).eval()


def is_channels_last(model: torch.nn.Module) -> bool:
    return model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("path", ["eager", "channels_last"])
def test_every_path_gives_the_eager_outputs(path: str) -> None:
    inputs = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model = resnet()
    with torch.inference_mode():
        expected = model(inputs)
    choice = choose(model, 64, torch.device("cpu"), requested=path)
    assert choice.path == path and is_channels_last(model) == (path == "channels_last")
    with torch.inference_mode():
        found = model(choice.inputs(inputs))
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("eager", "last", "onnx", "chosen"),
    [
        (0.020, 0.010, 0.015, "channels_last"),
        (0.010, 0.020, 0.030, "eager"),
        (0.0100, 0.0099, 0.0098, "eager"),
        (0.020, 0.015, 0.010, "onnxruntime"),
    ],
)
def test_the_fastest_path_by_a_margin_is_kept(
    monkeypatch: pytest.MonkeyPatch, eager: float, last: float, onnx: float, chosen: str
) -> None:
    def timed(model: object, inputs: torch.Tensor, timer: object) -> float:
        if isinstance(model, forward.OnnxRunner):
            return onnx
        return last if inputs.is_contiguous(memory_format=torch.channels_last) else eager

    monkeypatch.setattr(forward, "_time", timed)
    monkeypatch.delenv("SM_IMGCLF_FORWARD", raising=False)
    model = resnet()
    choice = choose(model, 32, torch.device("cpu"))
    assert choice.path == chosen and is_channels_last(model) == (chosen == "channels_last")
    assert (choice.runner is not None) == (chosen == "onnxruntime")
    assert "eager" in choice.reason and "onnxruntime" in choice.reason and "ms" in choice.reason


def test_onnxruntime_serves_the_eager_outputs_at_any_batch_size() -> None:
    model = resnet()
    choice = choose(model, 64, torch.device("cpu"), requested="onnxruntime")
    assert choice.path == "onnxruntime" and not is_channels_last(model)
    for size in (1, 5):
        inputs = torch.randn(size, 3, 64, 64, generator=torch.Generator().manual_seed(size))
        with torch.inference_mode():
            expected = model(inputs)
            found = choice.logits(model, choice.inputs(inputs))
        torch.testing.assert_close(found, expected, **forward.ONNX_TOLERANCE)


class Branching(torch.nn.Module):
    """A model whose path depends on its input's values: no static graph to export."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        if pooled.sum() > 0:
            return self.head(pooled)
        return -self.head(pooled)


def test_a_model_onnx_cannot_hold_is_served_by_torch_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SM_IMGCLF_FORWARD", raising=False)
    choice = choose(Branching().eval(), 16, torch.device("cpu"))
    assert choice.path in ("eager", "channels_last") and choice.runner is None
    assert "onnxruntime left out: " in choice.reason
    with pytest.raises(RuntimeError, match="SM_IMGCLF_FORWARD=onnxruntime, but "):
        choose(Branching().eval(), 16, torch.device("cpu"), requested="onnxruntime")


def test_without_onnxruntime_the_torch_paths_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import that fails
    monkeypatch.delenv("SM_IMGCLF_FORWARD", raising=False)
    choice = choose(resnet(), 32, torch.device("cpu"))
    assert "onnxruntime is not installed (pip install 'sm-imgclf[onnx]')" in choice.reason


def test_the_environment_skips_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> float:
        raise AssertionError("measured although the path was set")

    monkeypatch.setattr(forward, "_time", never)
    monkeypatch.setenv("SM_IMGCLF_FORWARD", "channels_last")
    choice = choose(resnet(), 32, torch.device("cpu"))
    assert choice == forward.ForwardChoice("channels_last", "set by SM_IMGCLF_FORWARD")


class Close(torch.nn.Module):
    """Two classes a point apart at logits of 1000: half precision cannot tell them apart."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.tensor([1000.0, 1001.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_half_precision_autocast_serves_the_float32_probabilities() -> None:
    inputs = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    model = resnet()
    with torch.inference_mode():
        expected = torch.softmax(model(inputs), dim=1)
    choice = choose(model, 64, torch.device("cpu"), requested="autocast")
    assert choice.path == "autocast" and is_channels_last(model)
    with torch.inference_mode():
        logits = choice.logits(model, choice.inputs(inputs))
    assert logits.dtype == torch.float32
    found = torch.softmax(logits, dim=1)
    assert (found - expected).abs().max() <= forward.AUTOCAST_TOLERANCE
    assert forward.autocast_check(model, torch.zeros(2, 3, 64, 64)) == ""


def test_a_model_half_precision_would_change_is_left_out_with_the_reason() -> None:
    reason = forward.autocast_check(Close().eval(), torch.zeros(2, 3, 8, 8))
    assert reason.startswith("probabilities moved by up to 0.23")


@pytest.mark.parametrize(
    ("times", "chosen"),
    [
        ({"eager": 0.020, "channels_last": 0.015, "autocast": 0.008}, "autocast"),
        ({"eager": 0.010, "channels_last": 0.0099, "autocast": 0.0098}, "eager"),
        ({"eager": 0.020, "channels_last": 0.010, "autocast": 0.012}, "channels_last"),
    ],
)
def test_on_a_gpu_the_fastest_of_three_by_a_margin_is_kept(
    monkeypatch: pytest.MonkeyPatch, times: dict[str, float], chosen: str
) -> None:
    """The choice on a GPU, driven by faked timings (the timings themselves need a GPU)."""

    def timed(model: object, inputs: torch.Tensor, timer: object) -> float:
        if not isinstance(model, torch.nn.Module):
            return times["autocast"]
        last = inputs.is_contiguous(memory_format=torch.channels_last)
        return times["channels_last" if last else "eager"]

    monkeypatch.setattr(forward, "_time", timed)
    model = resnet()
    choice = forward._measured_gpu(model, torch.zeros(16, 3, 32, 32), time.perf_counter)
    assert choice.path == chosen
    assert is_channels_last(model) == (chosen in ("channels_last", "autocast"))
    assert "batch 16 at 32 px" in choice.reason and "autocast" in choice.reason


def test_on_a_gpu_autocast_is_left_out_when_it_moves_the_probabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forward, "_time", lambda model, inputs, timer: 0.01)
    choice = forward._measured_gpu(Close().eval(), torch.zeros(16, 3, 8, 8), time.perf_counter)
    assert choice.path == "eager"
    assert "autocast left out: probabilities moved by up to" in choice.reason
