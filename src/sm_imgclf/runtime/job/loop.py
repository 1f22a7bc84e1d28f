"""The training loop: epochs, metrics, the best weights, early stopping and resumption."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf.errors import ConfigurationError
from sm_imgclf.runtime.job import checkpoint
from sm_imgclf.runtime.job.control import JobControl, StopRequested
from sm_imgclf.runtime.job.deadline import Deadline
from sm_imgclf.runtime.job.epoch import EpochBatches
from sm_imgclf.runtime.job.feed import Batches, Feeder

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sm_imgclf.contracts.hyperparameters import Hyperparameters
    from sm_imgclf.runtime.job.data import SplitData
    from sm_imgclf.runtime.job.stream import StreamedSplit


@dataclass
class Trainer:
    """Trains ``model`` on uint8 image tensors (or on cached features, see ``features``)."""

    model: nn.Module
    hp: Hyperparameters
    device: torch.device
    mean: tuple[float, ...]
    std: tuple[float, ...]
    checkpoint_dir: Path
    log: Callable[[str], None] = print
    features: bool = False
    frozen: list[nn.Module] = field(default_factory=list)
    distributed: Any = None
    monitor: Any = None
    confusion: Any = None
    tracker: Any = None  # the job's MLflow run, when it tracks
    control: JobControl | None = None
    deadline: Deadline = field(default_factory=Deadline)
    # None: on the device when it is a GPU (the benchmarks set it to compare).
    augment_on_device: bool | None = None
    # NHWC weights and batches (tensor-core convolutions); off until a GPU's figures say on.
    channels_last: bool = False
    # Discriminative rates (fine-tuning): the head's group at lr, the backbone's lower;
    # their first epoch warms up step by step.
    groups: list[dict[str, Any]] | None = None
    _made: Batches | None = field(default=None, init=False, repr=False)
    _cut: bool = field(default=False, init=False, repr=False)
    _position: Any = field(default=None, init=False, repr=False)
    _totals: tuple[float, int, int] = field(default=(0.0, 0, 0), init=False, repr=False)

    def fit(self, train: SplitData | StreamedSplit, valid: SplitData | None) -> dict[str, Any]:
        """Train for ``hp.epochs`` (resuming a checkpoint if one exists); return the history."""
        import torch

        if self.channels_last and not self.features:
            self.model.to(memory_format=torch.channels_last)
        params: list[Any] = [p for p in self.model.parameters() if p.requires_grad]
        params = self.groups or params
        optimizer = make_optimizer(params, self.hp)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(self.hp))
        loss_fn = training_loss(class_weights(train, self.hp.class_weighting), self.hp, self.device)
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        state = self._resume(optimizer, scheduler, scaler)
        for epoch in range(state["epoch"] + 1, self.hp.epochs + 1):
            started = time.perf_counter()
            torch.manual_seed(self.hp.seed * 100_003 + epoch)  # dropout, reproducible on resume
            with oom_guard(self.hp.batch_size, self.device):
                train_metrics = self._train_epoch(
                    train, epoch, optimizer, loss_fn, scaler, state.pop("partial", None)
                )
            if self._cut:  # a part of an epoch is no epoch: the last whole one stands
                self._save_partial(state, optimizer, scheduler, scaler, epoch)
                self._stopped_early(state, f"epoch {epoch} was cut short: {self._why()}")
                break
            scheduler.step()
            metrics = {f"train:{k}": v for k, v in train_metrics.items()}
            evaluated = time.perf_counter()
            if valid is not None:
                metrics |= {f"valid:{k}": v for k, v in self.evaluate(valid, loss_fn).items()}
            metrics["epoch_seconds"] = time.perf_counter() - started
            self.deadline.measured(metrics["epoch_seconds"], time.perf_counter() - evaluated)
            self._record(state, epoch, metrics)
            self._save(state, optimizer, scheduler, epoch, scaler)
            # Reported only once saved: an epoch in the log survives a kill.
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if ":" in k)
            # The speed the library keeps to tell later jobs how long they will take.
            self.log(
                f"epoch={epoch} {shown} epoch_seconds={metrics['epoch_seconds']:.3f} "
                f"train_images={len(train)}"
            )
            if self.monitor is not None:
                self.monitor.epoch({"epoch": epoch, **metrics, "confusion": self.confusion})
            if self.tracker is not None:
                self.tracker.epoch(epoch, metrics)
            patience = self._should_stop(state)
            if patience:
                self.log(
                    f"early stopping: no valid improvement in "
                    f"{self.hp.early_stopping_patience} epochs"
                )
            if self._agree(patience or (self.monitor is not None and self.monitor.stop)):
                break
            if self.control is not None:
                self.control.after_epoch(
                    epoch, last=epoch == self.hp.epochs, log=self.log, stopping=self._stopping
                )
            if epoch < self.hp.epochs and self._agree(self._past_deadline()):
                self._stopped_early(state, self._why())
                break
        if state["best_state"] is not None:
            self.model.load_state_dict(state["best_state"])
        return state

    def _train_epoch(
        self,
        data: SplitData | StreamedSplit,
        epoch: int,
        optimizer: Any,
        loss_fn: Any,
        scaler: Any,
        partial: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        import torch

        self.model.train()
        for module in self.frozen:
            module.eval()  # frozen batch norms keep their pretrained statistics
        generator = torch.Generator().manual_seed(self.hp.seed * 1_000_003 + epoch)
        batches = self._epoch_batches(data, epoch, generator, partial)
        self._position = batches
        # Totals stay on the device: a GPU never waits for the host between steps.
        loss0, right0, seen = batches.totals
        total_loss = torch.full((), loss0, dtype=torch.float64, device=self.device)
        correct = torch.full((), right0, dtype=torch.long, device=self.device)
        if batches.resumed:
            self.log(f"resumed epoch {epoch} at batch {batches.number} of {batches.per_epoch}")
        per_epoch = batches.per_epoch
        first = lr_factor(self.hp)(0) if self.groups and epoch == 1 else None
        for number, inputs, labels in batches:
            # One process alone may leave mid-epoch; ranks must agree, at the epoch's end.
            if self.distributed is None and self._stopping():
                self._cut = True
                self._totals = (float(total_loss), int(correct), seen)
                break
            if self.monitor is not None:
                self.monitor.start()
            step = (epoch - 1) * per_epoch + number + 1
            if first is not None:
                _warm_up(optimizer, (number + 1) / per_epoch * first)
            loss, logits = self._step(inputs, labels, step, epoch, optimizer, loss_fn, scaler)
            batches.done()
            total_loss += loss.double() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            # A rule can only have fired on a recorded step: ranks agree on those alone,
            # since agreeing is a collective and a read, which would stall every step.
            if self._may_stop(step) and self._agree(self.monitor is not None and self.monitor.stop):
                break
        return self._reduce(total_loss, correct, seen)

    def _epoch_batches(
        self,
        data: SplitData | StreamedSplit,
        epoch: int,
        generator: torch.Generator,
        partial: dict[str, Any] | None,
    ) -> EpochBatches:
        from sm_imgclf.runtime.job.stream import StreamedSplit

        size = self.hp.batch_size
        order, plan = None, None
        if isinstance(data, StreamedSplit):
            rank, world = self.distributed or (0, 1)
            plan = data.plan(epoch, self.hp.seed, size, rank, world)
        else:
            order = self._order(len(data), generator)
        kept = partial if partial is not None and partial.get("epoch") == epoch else None
        return EpochBatches(
            self._batches,
            data,
            order=order,
            plan=plan,
            batch_size=size,
            generator=generator,
            partial=kept,
        )

    def _step(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        epoch: int,
        optimizer: Any,
        loss_fn: Any,
        scaler: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        monitor = self.monitor
        recorded = monitor.begin(step, self.model) if monitor is not None else False
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            logits = self.model(inputs)
            loss = loss_fn(logits, labels)
        if monitor is not None:
            monitor.mark(recorded)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if monitor is not None:
            monitor.mark(recorded)
            if recorded:
                scaler.unscale_(optimizer)  # true gradients for the record (no-op on CPU)
                monitor.gradients(self.model, step, epoch, float(loss.detach()))
        # Reading the scale waits for the GPU: only the recorder needs it.
        scale = scaler.get_scale() if monitor is not None and scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        if monitor is not None:
            # The scaler lowers its scale exactly when it skipped a step for inf gradients.
            skipped = scale is not None and scaler.get_scale() < scale
            monitor.end(step, self.model, recorded, amp_skipped=skipped)
        return loss.detach(), logits

    def evaluate(self, data: SplitData, loss_fn: Any = None) -> dict[str, float]:
        """Return loss and accuracy on ``data`` (unaugmented).

        The loss is the training loss function (class weights, label smoothing),
        averaged per batch and weighted by batch size as the training loss is, so
        the two compare (the ``overfit`` rule compares them).
        """
        import torch

        loss_fn = loss_fn or torch.nn.CrossEntropyLoss()
        self.model.eval()
        classes = len(data.class_ids)
        # Totals stay on the device, read once at the end, as in training.
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        counts = torch.zeros(classes * classes, dtype=torch.long, device=self.device)
        step = max(self.hp.batch_size, 64)  # no gradients: larger batches fit
        with torch.inference_mode(), oom_guard(step, self.device, "evaluation batch"):
            for start in range(0, len(data), step):
                inputs = self._batches.evaluation(data, start, start + step)
                labels = self._batches.feeder.span(data.labels, start, start + step)
                with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                    logits = self.model(inputs)
                total_loss += loss_fn(logits.float(), labels).double() * len(labels)
                predicted = logits.argmax(1)
                correct += (predicted == labels).sum()
                counts += torch.bincount(labels * classes + predicted, minlength=classes**2)
        loss, right = torch.stack([total_loss, correct.double()]).tolist()
        self.confusion = counts.view(classes, classes).tolist()
        return {"loss": loss / len(data), "accuracy": right / len(data)}

    @property
    def _batches(self) -> Batches:
        if self._made is None:
            on_device = (
                self.device.type == "cuda"
                if self.augment_on_device is None
                else self.augment_on_device
            )
            self._made = Batches(
                Feeder(self.device),
                self.hp.image_size,
                self.hp.augmentation,
                self.mean,
                self.std,
                features=self.features,
                augment_on_device=on_device,
                channels_last=self.channels_last,
            )
        return self._made

    def _order(self, n: int, generator: torch.Generator) -> torch.Tensor:
        import torch

        order = torch.randperm(n, generator=generator)
        if self.distributed is not None:
            # Every rank must take the same number of steps, or all-reduce waits forever.
            rank, world = self.distributed
            order = order[: n - n % world][rank::world]
        return order

    def _reduce(
        self, total_loss: torch.Tensor, correct: torch.Tensor, seen: int
    ) -> dict[str, float]:
        """Loss and accuracy from the epoch's device totals, summed over ranks if several."""
        import torch

        # On the device: NCCL, the GPU backend, reduces no CPU tensors.
        sums = torch.stack(
            [
                total_loss,
                correct.double(),
                torch.tensor(float(seen), dtype=torch.float64, device=self.device),
            ]
        )
        if self.distributed is not None:
            import torch.distributed as dist

            dist.all_reduce(sums)
        loss, right, count = sums.tolist()  # the epoch's one read from the device
        return {"loss": loss / count, "accuracy": right / count}

    def _stopping(self) -> bool:
        """Whether to leave now: a stop was asked for, or only the finish still fits."""
        self._read_stop_file()
        return self.deadline.stop_now()

    def _past_deadline(self) -> bool:
        self._read_stop_file()
        return self.deadline.stop_before_next_epoch() is not None

    def _read_stop_file(self) -> None:
        if self.control is not None and self.control.stop_requested():
            self.deadline.stop_asked = True

    def _why(self) -> str:
        return self.deadline.stop_before_next_epoch() or "the run limit is near"

    def _stopped_early(self, state: dict[str, Any], why: str) -> None:
        """Say why training ends here; with no whole epoch there is nothing to keep."""
        if not state["best_epoch"]:
            self.log(f"stopping: {why}; no epoch ended, so there is no model to package")
            raise StopRequested
        self.log(
            f"stopping early: {why}; the best epoch ({state['best_epoch']}) is evaluated "
            "and packaged"
        )

    def _may_stop(self, step: int) -> bool:
        """Whether a rule may ask to stop at ``step``.

        One process: at every step. Ranks: where the recorder runs, which every
        rank can tell, monitor or not.
        """
        every = self.hp.record_every
        return self.distributed is None or (bool(every) and (step == 1 or step % every == 0))

    def _agree(self, stop: bool) -> bool:
        """Whether any rank wants to stop; every rank gets the same answer.

        Only rank 0 runs the checks, and a rank that left the loop alone would
        leave the others waiting forever in the next collective.
        """
        if self.distributed is None:
            return stop
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _resume(self, optimizer: Any, scheduler: Any, scaler: Any) -> dict[str, Any]:
        state = checkpoint.load(self.checkpoint_dir)
        if state is None:
            return {
                "epoch": 0,
                "history": [],
                "best_state": None,
                "best": None,
                "best_epoch": 0,
                "since_best": 0,
            }
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # the calibrated AMP scale, so no step is skipped anew
            scaler.load_state_dict(state["scaler"])
        self.log(f"resumed from checkpoint at epoch {state['epoch']}")
        return state

    def _record(self, state: dict[str, Any], epoch: int, metrics: dict[str, float]) -> None:
        state["history"].append({"epoch": epoch, **metrics})
        score = (
            metrics.get("valid:accuracy", metrics["train:accuracy"]),
            -metrics.get("valid:loss", metrics["train:loss"]),
        )
        if state["best"] is None or score > tuple(state["best"]):
            state["best"], state["best_epoch"], state["since_best"] = list(score), epoch, 0
            state["best_state"] = copy.deepcopy(self.model.state_dict())
        else:
            state["since_best"] += 1

    def _save(
        self, state: dict[str, Any], optimizer: Any, scheduler: Any, epoch: int, scaler: Any
    ) -> None:
        state.update(
            epoch=epoch,
            model=self.model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
        )
        if self.distributed is None or self.distributed[0] == 0:
            checkpoint.save(self.checkpoint_dir, state)

    def _save_partial(
        self, state: dict[str, Any], optimizer: Any, scheduler: Any, scaler: Any, epoch: int
    ) -> None:
        """Keep the cut epoch's place and weights, so a resumed job goes on from that batch.

        The last whole epoch stays the checkpoint's epoch: the package still
        holds the best whole epoch, and a job that is not resumed loses nothing.
        """
        position = self._position.position()
        if not position["batches"]:
            return
        kept = {**state, "model": self.model.state_dict(), "optimizer": optimizer.state_dict()}
        kept |= {"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}
        kept["partial"] = {"epoch": epoch, **position, "totals": list(self._totals)}
        checkpoint.save(self.checkpoint_dir, kept)
        self.log(
            f"checkpoint: epoch {epoch} stopped after batch {position['batches']} of "
            f"{self._position.per_epoch}; a resumed job goes on from there"
        )

    def _should_stop(self, state: dict[str, Any]) -> bool:
        patience = self.hp.early_stopping_patience
        return bool(patience) and state["since_best"] >= patience


@contextlib.contextmanager
def oom_guard(batch_size: int, device: torch.device, what: str = "batch_size") -> Iterator[None]:
    """Turn an out-of-memory error into advice on the batch size."""
    try:
        yield
    except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
        text = str(error)
        if "out of memory" not in text.lower() and "can't allocate memory" not in text:
            raise
        raise ConfigurationError(
            f"{what}={batch_size} does not fit in {device.type} memory "
            f"({text.splitlines()[0][:200]}). Try batch_size={max(1, batch_size // 2)} "
            "or a smaller image_size."
        ) from error


def _warm_up(optimizer: Any, factor: float) -> None:
    """Set each group's rate to ``factor`` times its base, step by step in the first epoch.

    Adam's first steps are as large as the rate whatever the gradients: at the full
    rate, a fitted head's near-zero gradients move the pretrained blocks at random
    (a fine-tuned EfficientNet-Lite0 then collapsed to chance on a two-class set).
    """
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def make_optimizer(params: list[Any], hp: Hyperparameters) -> Any:
    """Return the optimizer ``hp.optimizer`` names, over parameters or parameter groups."""
    import torch

    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    # On a GPU the fused kernels take the AMP scaler's inf check on the device; the
    # others make the scaler read it on the host every step.
    fused = bool(tensors) and all(t.is_cuda for t in tensors)
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
            fused=fused or None,
        )
    kind = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
    return kind(params, lr=hp.lr, eps=hp.eps, weight_decay=hp.weight_decay, fused=fused or None)


def lr_factor(hp: Hyperparameters) -> Callable[[int], float]:
    """Return the learning-rate multiplier per epoch: warm-up, then step or cosine decay."""

    def factor(epoch: int) -> float:
        if epoch < hp.warmup_epochs:
            return (epoch + 1) / (hp.warmup_epochs + 1)
        done = epoch - hp.warmup_epochs
        if hp.lr_schedule == "step":
            return float(hp.lr_gamma ** (done // hp.lr_step_epochs))
        if hp.lr_schedule == "cosine":
            span = max(1, hp.epochs - hp.warmup_epochs)
            return 0.5 * (1 + math.cos(math.pi * min(done, span) / span))
        return 1.0

    return factor


def training_loss(weights: torch.Tensor | None, hp: Hyperparameters, device: torch.device) -> Any:
    """The training loss: cross-entropy with ``weights`` and ``hp.label_smoothing``."""
    import torch

    return torch.nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device),
        label_smoothing=hp.label_smoothing,
    )


def class_weights(train: SplitData | StreamedSplit, weighting: str) -> torch.Tensor | None:
    """Return loss weights inverse to class frequency for ``balanced``, else ``None``."""
    import torch

    if weighting != "balanced":
        return None
    counts = torch.bincount(train.labels, minlength=len(train.class_ids)).float()
    return counts.sum() / (len(counts) * counts.clamp(min=1))
