"""The recorder inside the job: losses, gradients, weights, activations, every N steps.

It writes :mod:`sm_imgclf.runtime.checks.records`' formats under ``<output>/debug`` and
runs the rules as the data arrives: a rule that triggers is logged once, with
its suggestion, and ``stop_on`` can end training there (the best epoch so far
is still packaged).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sm_imgclf.runtime.checks.records import RECORDS, Records
from sm_imgclf.runtime.checks.rules import evaluate

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn


def group_of(name: str) -> str:
    """The layer group of a parameter: its first two name parts (``layer1.0``, ``fc``)."""
    parts = name.removeprefix("module.").split(".")[:-1] or ["model"]
    return ".".join(parts[:2])


class Recorder:
    """Records every ``every`` steps and each epoch; checks the rules as it goes.

    Args:
        folder: The ``debug`` folder.
        every: Steps between records.
        meta: Facts the rules need (class names, train counts ...).
        stop_on: ``"none"``, ``"any"`` or a rule name that stops training.
        log: Where trigger messages go.
    """

    def __init__(self, folder: Path, every: int, meta: dict[str, Any], stop_on: str,
                 log: Callable[[str], None]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.every, self.stop_on, self.log = every, stop_on, log
        self.records = Records()
        self._out: TextIO = (folder / RECORDS).open("a")
        self._write({"type": "meta", **meta})
        self.triggered: set[str] = set()
        self.stop = False
        self._hooks: list[Any] = []
        self._relu: dict[str, list[float]] = {}

    def wants(self, step: int) -> bool:
        """Whether ``step`` is recorded."""
        return step == 1 or step % self.every == 0

    def watch(self, model: nn.Module) -> None:
        """Hook the ReLU layers for this step's forward pass."""
        from torch import nn

        def hook(name: str) -> Any:
            def record(module: Any, inputs: Any, output: Any) -> None:
                self._relu.setdefault(name, []).append(float((output == 0).float().mean()))
            return record

        self._relu = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.ReLU | nn.ReLU6):
                self._hooks.append(module.register_forward_hook(hook(name)))

    def gradients(self, model: nn.Module, step: int, epoch: int, loss: float) -> dict[str, Any]:
        """Start this step's record: loss, per-group gradient norms, non-finite groups."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        norms: dict[str, float] = {}
        sums: dict[str, list[float]] = {}
        for name, param in model.named_parameters():
            if param.grad is None:
                continue
            grad = param.grad.detach().float()
            group = group_of(name)
            acc = sums.setdefault(group, [0.0, 0.0, 0.0])
            acc[0] += float(grad.pow(2).sum())
            acc[1] += float(grad.abs().sum())
            acc[2] += grad.numel()
        for group, (squares, _, _) in sums.items():
            norms[group] = math.sqrt(squares) if math.isfinite(squares) else math.inf
        return {"type": "step", "step": step, "epoch": epoch, "loss": loss,
                "grad_norm": norms,
                "grad_mean": {g: a[1] / max(a[2], 1) for g, a in sums.items()},
                "nonfinite": [g for g, v in norms.items() if not math.isfinite(v)],
                "relu_zero": {n: sum(v) / len(v) for n, v in self._relu.items()}}

    def weights(self, model: nn.Module, record: dict[str, Any]) -> None:
        """Finish the record with weight statistics of every group's matrices and kernels."""
        sums: dict[str, list[float]] = {}
        for name, param in model.named_parameters():
            if param.ndim < 2:
                continue  # biases and norm scales start constant by design
            data = param.detach().float()
            acc = sums.setdefault(group_of(name), [0.0, 0.0, 0.0, 0.0])
            acc[0] += float(data.sum())
            acc[1] += float(data.pow(2).sum())
            acc[2] += data.numel()
            acc[3] = max(acc[3], float(data.abs().max()))
        stats = {}
        for group, (total, squares, count, absmax) in sums.items():
            mean = total / count
            variance = max(squares / count - mean * mean, 0.0)
            stats[group] = {"mean": mean, "std": math.sqrt(variance) if math.isfinite(
                variance) else math.inf, "absmax": absmax}
        record["weight"] = stats
        record["nonfinite"] += [g for g, s in stats.items()
                                if not math.isfinite(s["mean"]) and g not in record["nonfinite"]]
        self._commit(record)

    def epoch(self, row: dict[str, Any]) -> None:
        """Record an epoch's metrics (and the valid confusion counts)."""
        self._commit({"type": "epoch", **row})

    def _commit(self, row: dict[str, Any]) -> None:
        self._write(row)
        for result in evaluate(self.records, skip=self.triggered):
            if result.triggered:
                self.triggered.add(result.name)
                self.log(f"rule {result.name} triggered at {result.at} {result.step}: "
                         f"{result.message} Suggestion: {result.suggestion}")
                self._write({"type": "rule", "name": result.name, "at": result.at,
                             "step": result.step, "message": result.message})
                if self.stop_on in ("any", result.name):
                    self.stop = True
                    self.log(f"stopping training: rule {result.name} triggered "
                             f"(stop_on={self.stop_on!r})")

    def _write(self, row: dict[str, Any]) -> None:
        self.records.add(row)
        self._out.write(json.dumps(row, allow_nan=True) + "\n")
        self._out.flush()

    def close(self) -> None:
        """Close the records file."""
        self._out.close()
