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

    def __init__(
        self,
        folder: Path,
        every: int,
        meta: dict[str, Any],
        stop_on: str,
        log: Callable[[str], None],
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.every, self.stop_on, self.log = every, stop_on, log
        self.records = Records()
        self._out: TextIO = (folder / RECORDS).open("a")
        self._write({"type": "meta", **meta})
        self.triggered: set[str] = set()
        self.stop = False
        self._hooks: list[Any] = []
        self._relu: dict[str, list[Any]] = {}

    def wants(self, step: int) -> bool:
        """Whether ``step`` is recorded."""
        return step == 1 or step % self.every == 0

    def watch(self, model: nn.Module) -> None:
        """Hook the ReLU layers for this step's forward pass."""
        from torch import nn

        def hook(name: str) -> Any:
            def record(module: Any, inputs: Any, output: Any) -> None:
                # Kept on the device: reading it here would stall the forward pass it times.
                self._relu.setdefault(name, []).append((output == 0).float().mean())

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
        sums = _per_group(
            model, lambda p: p.grad, lambda g: [g.pow(2).sum(), g.abs().sum()], ("sum", "sum")
        )
        for group, (squares, _, _) in sums.items():
            norms[group] = math.sqrt(squares) if math.isfinite(squares) else math.inf
        return {
            "type": "step",
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "grad_norm": norms,
            "grad_mean": {g: a[1] / max(a[2], 1) for g, a in sums.items()},
            "nonfinite": [g for g, v in norms.items() if not math.isfinite(v)],
            "relu_zero": self._relu_zero(),
        }

    def _relu_zero(self) -> dict[str, float]:
        """Each ReLU's share of zero outputs over this step's calls, in one device read."""
        import torch

        if not self._relu:
            return {}
        means = torch.stack([torch.stack(v).mean() for v in self._relu.values()]).tolist()
        return dict(zip(self._relu, means, strict=True))

    def weights(self, model: nn.Module, record: dict[str, Any]) -> None:
        """Finish the record with weight statistics of every group's matrices and kernels."""
        # Biases and norm scales start constant by design: matrices and kernels only.
        sums = _per_group(
            model,
            lambda p: p if p.ndim >= 2 else None,
            lambda d: [d.sum(), d.pow(2).sum(), d.abs().max()],
            ("sum", "sum", "max"),
        )
        stats = {}
        for group, (total, squares, absmax, count) in sums.items():
            mean = total / count
            variance = max(squares / count - mean * mean, 0.0)
            stats[group] = {
                "mean": mean,
                "std": math.sqrt(variance) if math.isfinite(variance) else math.inf,
                "absmax": absmax,
            }
        record["weight"] = stats
        record["nonfinite"] += [
            g
            for g, s in stats.items()
            if not math.isfinite(s["mean"]) and g not in record["nonfinite"]
        ]
        self._commit(record)

    def epoch(self, row: dict[str, Any]) -> None:
        """Record an epoch's metrics (and the valid confusion counts)."""
        self._commit({"type": "epoch", **row})

    def _commit(self, row: dict[str, Any]) -> None:
        self._write(row)
        for result in evaluate(self.records, skip=self.triggered):
            if result.triggered:
                self.triggered.add(result.name)
                self.log(
                    f"rule {result.name} triggered at {result.at} {result.step}: "
                    f"{result.message} Suggestion: {result.suggestion}"
                )
                self._write(
                    {
                        "type": "rule",
                        "name": result.name,
                        "at": result.at,
                        "step": result.step,
                        "message": result.message,
                    }
                )
                if self.stop_on in ("any", result.name):
                    self.stop = True
                    self.log(
                        f"stopping training: rule {result.name} triggered "
                        f"(stop_on={self.stop_on!r})"
                    )

    def _write(self, row: dict[str, Any]) -> None:
        self.records.add(row)
        self._out.write(json.dumps(row, allow_nan=True) + "\n")
        self._out.flush()

    def close(self) -> None:
        """Close the records file."""
        self._out.close()


def _per_group(
    model: nn.Module,
    pick: Callable[[Any], Any],
    measure: Callable[[Any], list[Any]],
    combine: tuple[str, ...],
) -> dict[str, list[float]]:
    """Statistics of each picked tensor, combined per layer group, plus its element count.

    Every statistic is read from the device in one transfer: a read per tensor
    would wait on a GPU dozens of times per recorded step.
    """
    import torch

    groups, rows, counts = [], [], []
    for name, param in model.named_parameters():
        tensor = pick(param)
        if tensor is None:
            continue
        values = tensor.detach().float()
        groups.append(group_of(name))
        rows.append(torch.stack(measure(values)).double())
        counts.append(values.numel())
    read = torch.stack(rows).tolist() if rows else []
    sums: dict[str, list[float]] = {}
    for group, values, count in zip(groups, read, counts, strict=True):
        acc = sums.get(group)
        if acc is None:
            sums[group] = [*values, float(count)]
            continue
        for i, (how, value) in enumerate(zip(combine, values, strict=True)):
            acc[i] = max(acc[i], value) if how == "max" else acc[i] + value
        acc[-1] += count
    return sums
