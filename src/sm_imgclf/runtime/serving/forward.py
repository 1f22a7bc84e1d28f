"""The forward pass a server runs, chosen by measuring the candidates when the model loads.

On a CPU, convolutions in channels-last memory format often run faster (oneDNN
kernels), and ONNX Runtime's fused graph is often faster still, but neither for
every model and machine. So the candidates are timed on the model's own input
size and the fastest kept, with the figures in the server's log:

* ``eager``: the PyTorch module as it is;
* ``channels_last``: the same module with its weights and inputs in NHWC;
* ``onnxruntime``: the module exported to ONNX (``torch.onnx.export``, the
  batch dimension dynamic) and run by ONNX Runtime, where the ``onnx`` extra is
  installed. Its outputs must match eager within :data:`ONNX_TOLERANCE` on a
  probe batch, or it is left out and the log says why.

On a GPU the candidates are ``eager``, ``channels_last`` and ``autocast``
(float16 autocast over channels-last weights, for the tensor cores), timed at
batch :data:`GPU_PROBE_BATCH`, since a GPU's batch 1 is bound by kernel launches
and says nothing of its arithmetic. ``autocast`` must give the float32
probabilities within :data:`AUTOCAST_TOLERANCE`, or it is left out with the reason.

``SM_IMGCLF_FORWARD=eager``, ``=channels_last``, ``=onnxruntime`` or ``=autocast``
(bfloat16 on a CPU) skips the measurement.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

EAGER, CHANNELS_LAST, ONNXRUNTIME = "eager", "channels_last", "onnxruntime"
AUTOCAST = "autocast"
PATHS = (EAGER, CHANNELS_LAST, ONNXRUNTIME, AUTOCAST)
_NHWC = (CHANNELS_LAST, AUTOCAST)  # the paths that keep weights and inputs channels-last
# A path must beat eager by this much to be kept: smaller gains are within noise.
MARGIN = 1.05
# ONNX Runtime fuses and reorders float32 arithmetic; logits may differ this much.
ONNX_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
_RTOL, _ATOL = ONNX_TOLERANCE["rtol"], ONNX_TOLERANCE["atol"]
# Half precision moves each class probability by at most this much, or is left out.
AUTOCAST_TOLERANCE = 1e-2
GPU_PROBE_BATCH = 16


@dataclass(frozen=True)
class ForwardChoice:
    """Which forward path serves, and why.

    Attributes:
        path: ``"eager"``, ``"channels_last"`` or ``"onnxruntime"``.
        reason: The measurement or setting that chose it.
        runner: The ONNX Runtime session of the ``onnxruntime`` path.
    """

    path: str
    reason: str
    runner: Any = None

    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch`` in the memory format the chosen path wants."""
        import torch

        if self.path in _NHWC:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def logits(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Run the chosen path on ``inputs`` (already in :meth:`inputs`' format)."""
        if self.runner is not None:
            return self.runner(inputs)  # type: ignore[no-any-return]
        if self.path == AUTOCAST:
            return half_logits(model, inputs)
        return model(inputs)  # type: ignore[no-any-return]


def half_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Float32 logits of ``model`` run under half-precision autocast on ``inputs``' device."""
    import torch

    half = torch.float16 if inputs.device.type == "cuda" else torch.bfloat16
    with torch.autocast(inputs.device.type, dtype=half):
        return model(inputs).float()  # type: ignore[no-any-return]


class OnnxRunner:
    """An ONNX Runtime session over a model exported with a dynamic batch dimension."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the same budget torch would have used
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """The logits of a float NCHW batch, as a CPU tensor."""
        import torch

        array = inputs.detach().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


def choose(
    model: nn.Module,
    image_size: int,
    device: torch.device,
    *,
    requested: str | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> ForwardChoice:
    """Set ``model`` up for the fastest path and say which it is.

    Args:
        model: The model in eval mode; converted to channels-last in place if chosen.
        image_size: Side of its square input.
        device: Where it runs; CPUs and CUDA devices are measured.
        requested: ``"eager"``, ``"channels_last"``, ``"onnxruntime"``,
            ``"autocast"``, ``"auto"`` or ``None`` (``None`` reads
            ``SM_IMGCLF_FORWARD``, default ``auto``).
        timer: The clock (for tests).

    Raises:
        RuntimeError: ``onnxruntime`` was asked for and cannot run this model here.
    """
    import torch

    wanted = (requested or os.environ.get("SM_IMGCLF_FORWARD", "auto")).strip().lower()
    probe = torch.zeros(1, 3, image_size, image_size, device=device)
    if wanted == ONNXRUNTIME:
        runner, why = onnx_runner(model, probe)
        if runner is None:
            raise RuntimeError(f"SM_IMGCLF_FORWARD=onnxruntime, but {why}.")
        return ForwardChoice(ONNXRUNTIME, "set by SM_IMGCLF_FORWARD", runner)
    if wanted in PATHS:
        _convert(model, wanted)
        return ForwardChoice(wanted, "set by SM_IMGCLF_FORWARD")
    if device.type == "cuda":
        return _measured_gpu(model, probe.expand(GPU_PROBE_BATCH, -1, -1, -1).clone(), timer)
    if device.type != "cpu":
        return ForwardChoice(EAGER, f"not measured on {device.type}")
    return _measured(model, probe, timer)


def _measured_gpu(
    model: nn.Module, probe: torch.Tensor, timer: Callable[[], float]
) -> ForwardChoice:
    """Time eager, channels-last and half-precision autocast; keep the fastest by the margin."""
    import torch

    times = {EAGER: _time(model, probe, timer)}
    _convert(model, CHANNELS_LAST)
    last = probe.contiguous(memory_format=torch.channels_last)
    times[CHANNELS_LAST] = _time(model, last, timer)
    left_out = autocast_check(model, last)
    if not left_out:
        times[AUTOCAST] = _time(lambda x: half_logits(model, x), last, timer)
    _convert(model, EAGER)
    return _fastest(model, times, probe, left_out and f"autocast left out: {left_out}")


def autocast_check(model: nn.Module, probe: torch.Tensor) -> str:
    """Why half-precision autocast cannot serve ``model`` (empty when it can)."""
    import torch

    check = torch.randn(probe.shape, generator=torch.Generator().manual_seed(0))
    check = check.to(probe.device, memory_format=torch.channels_last)
    with torch.inference_mode():
        full = torch.softmax(model(check).float(), dim=1)
        half = torch.softmax(half_logits(model, check), dim=1)
    moved = float((full - half).abs().max())
    if not moved <= AUTOCAST_TOLERANCE:  # NaN too
        return (
            f"probabilities moved by up to {moved:.3g} in half precision "
            f"(more than {AUTOCAST_TOLERANCE})"
        )
    return ""


def _measured(model: nn.Module, probe: torch.Tensor, timer: Callable[[], float]) -> ForwardChoice:
    """Time every candidate at batch 1 and keep the fastest that beats eager by the margin."""
    import torch

    runner, left_out = onnx_runner(model, probe)
    times = {EAGER: _time(model, probe, timer)}
    _convert(model, CHANNELS_LAST)
    times[CHANNELS_LAST] = _time(model, probe.contiguous(memory_format=torch.channels_last), timer)
    _convert(model, EAGER)
    if runner is not None:
        times[ONNXRUNTIME] = _time(runner, probe, timer)
    return _fastest(model, times, probe, left_out and f"onnxruntime left out: {left_out}", runner)


def _fastest(
    model: nn.Module,
    times: dict[str, float],
    probe: torch.Tensor,
    note: str,
    runner: OnnxRunner | None = None,
) -> ForwardChoice:
    """Keep the fastest path that beats eager by the margin; the reason holds the figures."""
    figures = f"batch {probe.shape[0]} at {probe.shape[-1]} px: " + ", ".join(
        f"{name.replace('_', '-')} {seconds * 1000:.1f} ms" for name, seconds in times.items()
    )
    if note:
        figures += f"; {note}"
    best = min(times, key=lambda name: times[name])
    if best == EAGER or times[best] * MARGIN >= times[EAGER]:
        return ForwardChoice(EAGER, f"no other path was faster by {MARGIN - 1:.0%} ({figures})")
    _convert(model, best)
    return ForwardChoice(
        best,
        f"{times[EAGER] / times[best]:.2f}x eager ({figures})",
        runner if best == ONNXRUNTIME else None,
    )


def onnx_runner(model: nn.Module, probe: torch.Tensor) -> tuple[OnnxRunner | None, str]:
    """Export ``model`` and load it in ONNX Runtime, or say why it cannot serve.

    The export is checked against the module on a random batch of two before it
    is trusted.
    """
    import torch

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed (pip install 'sm-imgclf[onnx]')"
    folder = Path(tempfile.mkdtemp(prefix="sm-imgclf-onnx-"))
    path = folder / "model.onnx"
    try:
        _export(model, probe, path)
        runner = OnnxRunner(path, torch.get_num_threads())
        check = torch.randn((2, *probe.shape[1:]), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = model(check)
        torch.testing.assert_close(runner(check), expected, rtol=_RTOL, atol=_ATOL)
    except Exception as error:  # any exporter or runtime failure leaves the torch paths
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return None, f"{type(error).__name__}: {first}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the session holds the graph in memory
    return runner, ""


def _export(model: nn.Module, probe: torch.Tensor, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    # The exporter reports progress on stdout; the server's log needs one line, not nine.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model,
            (probe,),
            dynamo=True,
            verbose=False,
            dynamic_shapes=({0: batch},),
            input_names=["images"],
            output_names=["logits"],
        )
    assert program is not None
    program.save(str(path))


def _convert(model: nn.Module, path: str) -> None:
    import torch

    model.to(memory_format=torch.channels_last if path in _NHWC else torch.contiguous_format)


def _time(
    model: Callable[[torch.Tensor], Any],
    inputs: torch.Tensor,
    timer: Callable[[], float],
    repeats: int = 3,
) -> float:
    """The best of ``repeats`` forward passes after one warm-up, in seconds."""
    import torch

    def synchronise() -> None:  # a GPU's work is queued: time it done, not launched
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)

    best = float("inf")
    with torch.inference_mode():
        model(inputs)
        for _ in range(repeats):
            synchronise()
            started = timer()
            model(inputs)
            synchronise()
            best = min(best, timer() - started)
    return best
