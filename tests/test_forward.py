"""The server's forward path: chosen by measurement when the model loads, same outputs."""

from __future__ import annotations

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


@pytest.mark.parametrize(("eager", "last", "chosen"), [
    (0.020, 0.010, "channels_last"), (0.010, 0.020, "eager"), (0.0100, 0.0099, "eager")])
def test_the_faster_path_by_a_margin_is_kept(monkeypatch: pytest.MonkeyPatch, eager: float,
                                            last: float, chosen: str) -> None:
    def timed(model: torch.nn.Module, inputs: torch.Tensor, timer: object) -> float:
        return last if inputs.is_contiguous(memory_format=torch.channels_last) else eager

    monkeypatch.setattr(forward, "_time", timed)
    monkeypatch.delenv("SM_IMGCLF_FORWARD", raising=False)
    model = resnet()
    choice = choose(model, 32, torch.device("cpu"))
    assert choice.path == chosen and is_channels_last(model) == (chosen == "channels_last")
    assert "eager" in choice.reason and "ms" in choice.reason


def test_the_environment_skips_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> float:
        raise AssertionError("measured although the path was set")

    monkeypatch.setattr(forward, "_time", never)
    monkeypatch.setenv("SM_IMGCLF_FORWARD", "channels_last")
    choice = choose(resnet(), 32, torch.device("cpu"))
    assert choice == forward.ForwardChoice("channels_last", "set by SM_IMGCLF_FORWARD")
