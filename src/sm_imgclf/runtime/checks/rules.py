"""The training checks: pure functions over recorded data, run live in the job and offline.

Names follow SageMaker Debugger's built-in rules where one exists. Every rule
takes the records (see :mod:`sm_imgclf.runtime.checks.records`) and its parameters, and
returns a :class:`RuleResult`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sm_imgclf._params import bad_value, check_number, suggest


@dataclass(frozen=True)
class RuleResult:
    """The verdict of one rule.

    Attributes:
        name: The rule's name (``"overfit"`` ...).
        triggered: Whether the problem was found.
        step: The first step (or epoch, see ``at``) where it was found.
        at: ``"step"`` or ``"epoch"``: what ``step`` counts.
        message: What was found, with the numbers.
        suggestion: What to change.
        parameters: The parameters the rule ran with.
    """

    name: str
    triggered: bool
    step: int | None
    at: str
    message: str
    suggestion: str
    parameters: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """A rule: its check, its parameters as ``name: (default, low, high)``, and its help."""

    name: str
    check: Callable[..., RuleResult]
    parameters: dict[str, tuple[float, float, float]]
    help: str


def _result(
    name: str,
    found: tuple[int, str] | None,
    at: str,
    suggestion: str,
    params: dict[str, float],
    quiet: str,
) -> RuleResult:
    if found is None:
        return RuleResult(name, False, None, at, quiet, "", params)
    return RuleResult(name, True, found[0], at, found[1], suggestion, params)


def vanishing_gradient(records: Any, threshold: float) -> RuleResult:
    """Some layer's mean absolute gradient falls below ``threshold``."""
    found = None
    for step in records.steps:
        small = {g: v for g, v in step.get("grad_mean", {}).items() if v < threshold}
        if small:
            worst = min(small, key=small.__getitem__)
            found = (
                step["step"],
                f"{len(small)} layer group(s) have mean |gradient| below "
                f"{threshold:g}; smallest {worst} at {small[worst]:.2e}.",
            )
            break
    return _result(
        "vanishing_gradient",
        found,
        "step",
        "Use ReLU-family activations and batch normalisation, residual "
        "connections, or a smaller depth; check the learning rate.",
        {"threshold": threshold},
        "Gradients reach every layer.",
    )


def exploding_tensor(records: Any, threshold: float) -> RuleResult:
    """A loss, gradient or weight is NaN or infinite, or a gradient norm exceeds ``threshold``."""
    found = None
    for step in records.steps:
        bad = list(step.get("nonfinite", []))
        if not math.isfinite(step.get("loss", 0.0)):
            bad.insert(0, "loss")
        big = [g for g, v in step.get("grad_norm", {}).items() if v > threshold]
        if bad or big:
            what = (
                f"non-finite values in {', '.join(bad[:5])}"
                if bad
                else f"gradient norm above {threshold:g} in {', '.join(big[:5])}"
            )
            found = (step["step"], what + ".")
            break
    return _result(
        "exploding_tensor",
        found,
        "step",
        "Lower the learning rate, add warm-up (warmup_epochs), or clip gradients.",
        {"threshold": threshold},
        "No tensor became NaN, infinite or huge.",
    )


def loss_not_decreasing(records: Any, window: float, diff_percent: float) -> RuleResult:
    """The train loss never falls ``diff_percent`` below its start, or below chance level.

    Chance level is ``ln(classes)``, the loss of a uniform guess: a model that stays
    there has learned nothing, whatever its first steps did.
    """
    losses = [(s["step"], s["loss"]) for s in records.steps if "loss" in s]
    size = int(window)
    if len(losses) < 2 * size:  # few records: judge by the epochs' train loss instead
        per_epoch = records.meta.get("steps_per_epoch") or 1
        losses = [
            (e["epoch"] * per_epoch, e["train:loss"]) for e in records.epochs if "train:loss" in e
        ]
        size = 1
    found = None
    if len(losses) >= 2 * size:
        means = [
            sum(v for _, v in losses[i : i + size]) / size for i in range(0, len(losses) - size + 1)
        ]
        finite = [m for m in means[1:] if math.isfinite(m)]
        chance = math.log(max(len(records.meta.get("class_names", [])), 2))
        target = min(means[0], chance) * (1 - diff_percent / 100)
        if not any(m < target for m in finite):
            best = min(finite, default=math.nan)
            found = (
                losses[-1][0],
                f"the train loss started at {means[0]:.4g} and its best "
                f"window since is {best:.4g}, never {diff_percent:g}% below "
                f"min(start, {chance:.4g} = the loss of a uniform guess).",
            )
    return _result(
        "loss_not_decreasing",
        found,
        "step",
        "Check the learning rate (too high or too low), the labels, and that the "
        "layers you meant to train are trainable.",
        {"window": window, "diff_percent": diff_percent},
        "The train loss decreases.",
    )


def overfit(records: Any, patience: float, ratio_threshold: float) -> RuleResult:
    """The valid loss rises for ``patience`` epochs while the train loss falls."""
    rows = [e for e in records.epochs if "valid:loss" in e]
    found = None
    for i in range(int(patience), len(rows)):
        span = rows[i - int(patience) : i + 1]
        rising = all(b["valid:loss"] > a["valid:loss"] for a, b in itertools.pairwise(span))
        falling = span[-1]["train:loss"] < span[0]["train:loss"]
        gap = span[-1]["valid:loss"] / max(span[-1]["train:loss"], 1e-12) - 1
        if rising and falling and gap > ratio_threshold:
            found = (
                span[-1]["epoch"],
                f"the valid loss rose for {int(patience)} epochs to "
                f"{span[-1]['valid:loss']:.4g} while the train loss fell to "
                f"{span[-1]['train:loss']:.4g}.",
            )
            break
    return _result(
        "overfit",
        found,
        "epoch",
        "Add data or augmentation (augmentation='strong'), weight decay or "
        "head_dropout, train fewer layers, or stop earlier (early_stopping_patience).",
        {"patience": patience, "ratio_threshold": ratio_threshold},
        "The valid loss follows the train loss.",
    )


def overtraining(records: Any, patience: float, delta: float) -> RuleResult:
    """Training went on ``patience`` epochs after the valid loss last improved by ``delta``."""
    rows = [e for e in records.epochs if "valid:loss" in e]
    found, best, since = None, math.inf, 0
    for row in rows:
        if row["valid:loss"] < best * (1 - delta):
            best, since = row["valid:loss"], 0
        else:
            since += 1
        if since >= patience:
            found = (
                row["epoch"],
                f"the valid loss has not improved by {delta:.0%} for "
                f"{since} epochs (best {best:.4g}).",
            )
            break
    return _result(
        "overtraining",
        found,
        "epoch",
        f"Set early_stopping_patience={int(patience)} or fewer epochs; the packaged "
        "model already keeps the best epoch.",
        {"patience": patience, "delta": delta},
        "The valid loss kept improving.",
    )


def poor_weight_initialization(records: Any, max_abs: float, loss_factor: float) -> RuleResult:
    """At the start, a layer's weights are constant (such as all zero) or too large."""
    first = records.steps[0] if records.steps else None
    found = None
    if first is not None:
        flat = [g for g, w in first.get("weight", {}).items() if w["std"] == 0]
        big = [g for g, w in first.get("weight", {}).items() if w["absmax"] > max_abs]
        classes = len(records.meta.get("class_names", [])) or 2
        loss = first.get("loss", 0.0)
        if flat:
            found = (
                first["step"],
                f"{len(flat)} layer group(s) start with constant weights "
                f"(such as all zero): {', '.join(flat[:4])}.",
            )
        elif big:
            found = (
                first["step"],
                f"{len(big)} layer group(s) start with weights above "
                f"{max_abs:g}: {', '.join(big[:4])}.",
            )
        elif not math.isfinite(loss) or loss > loss_factor * math.log(classes):
            found = (
                first["step"],
                f"the first loss {loss:.4g} is over {loss_factor:g} times "
                f"ln({classes}), the loss of a uniform guess.",
            )
    return _result(
        "poor_weight_initialization",
        found,
        "step",
        "Start from pretrained weights or torchvision's default initialisation "
        "(Kaiming for ReLU networks); never initialise weights to one constant.",
        {"max_abs": max_abs, "loss_factor": loss_factor},
        "The initial weights look sound.",
    )


def class_imbalance(records: Any, threshold_imbalance: float) -> RuleResult:
    """The largest class has ``threshold_imbalance`` times the images of the smallest."""
    counts = records.meta.get("train_counts", [])
    names = records.meta.get("class_names", [])
    found = None
    if counts and min(counts) >= 0:
        low, high = min(counts), max(counts)
        if high > threshold_imbalance * max(low, 1):
            small = names[counts.index(low)] if names else counts.index(low)
            large = names[counts.index(high)] if names else counts.index(high)
            found = (
                0,
                f"class {large!r} has {high} training images and {small!r} only {low} "
                f"(ratio {high / max(low, 1):.1f}).",
            )
    return _result(
        "class_imbalance",
        found,
        "step",
        "Set class_weighting='balanced', gather more images of the small classes, "
        "and judge the model by per-class accuracy.",
        {"threshold_imbalance": threshold_imbalance},
        "Classes are balanced enough.",
    )


def dead_relu(records: Any, threshold_inactivity: float, threshold_layer: float) -> RuleResult:
    """At least ``threshold_layer`` of the ReLU layers output zero almost always."""
    found = None
    for step in records.steps:
        fractions = step.get("relu_zero", {})
        if not fractions:
            continue
        dead = [n for n, f in fractions.items() if f >= threshold_inactivity]
        if len(dead) >= threshold_layer * len(fractions):
            found = (
                step["step"],
                f"{len(dead)} of {len(fractions)} ReLU layers output zero "
                f"for at least {threshold_inactivity:.0%} of their inputs.",
            )
            break
    return _result(
        "dead_relu",
        found,
        "step",
        "Lower the learning rate, use LeakyReLU-style activations, or check the "
        "input normalisation.",
        {"threshold_inactivity": threshold_inactivity, "threshold_layer": threshold_layer},
        "ReLU layers are active.",
    )


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "vanishing_gradient",
            vanishing_gradient,
            {"threshold": (1e-7, 0.0, 1.0)},
            "some layer's mean |gradient| below threshold",
        ),
        Rule(
            "exploding_tensor",
            exploding_tensor,
            {"threshold": (1e8, 1.0, 1e30)},
            "NaN or infinity in loss, gradients or weights, or a gradient norm above threshold",
        ),
        Rule(
            "loss_not_decreasing",
            loss_not_decreasing,
            {"window": (5, 1, 10_000), "diff_percent": (10.0, 0.0, 100.0)},
            "the train loss never falls diff_percent below its first window of records",
        ),
        Rule(
            "overfit",
            overfit,
            {"patience": (2, 1, 1000), "ratio_threshold": (0.1, 0.0, 1e6)},
            "the valid loss rises for patience epochs while the train loss falls",
        ),
        Rule(
            "overtraining",
            overtraining,
            {"patience": (3, 1, 1000), "delta": (0.01, 0.0, 1.0)},
            "patience epochs after the valid loss last improved by delta",
        ),
        Rule(
            "poor_weight_initialization",
            poor_weight_initialization,
            {"max_abs": (10.0, 0.0, 1e12), "loss_factor": (3.0, 1.0, 1e6)},
            "constant or very large initial weights, or a first loss far above a uniform guess",
        ),
        Rule(
            "class_imbalance",
            class_imbalance,
            {"threshold_imbalance": (10.0, 1.0, 1e9)},
            "the largest class has threshold_imbalance times the images of the smallest",
        ),
        Rule(
            "dead_relu",
            dead_relu,
            {"threshold_inactivity": (0.99, 0.0, 1.0), "threshold_layer": (0.5, 0.0, 1.0)},
            "threshold_layer of the ReLU layers output zero for threshold_inactivity of inputs",
        ),
    )
}


def rule_parameters(
    overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Every rule's parameters: defaults, with ``overrides`` checked and applied."""
    chosen = {
        name: {p: spec[0] for p, spec in rule.parameters.items()} for name, rule in RULES.items()
    }
    for name, values in (overrides or {}).items():
        if name not in RULES:
            raise bad_value("rule name", f"one of {sorted(RULES)}", name, suggest(name, RULES))
        if not isinstance(values, Mapping):
            raise bad_value(f"{name} overrides", "a mapping of parameter to value", values)
        for param, value in values.items():
            spec = RULES[name].parameters.get(param)
            if spec is None:
                raise bad_value(
                    f"{name} parameter",
                    f"one of {sorted(RULES[name].parameters)}",
                    param,
                    suggest(param, RULES[name].parameters),
                )
            chosen[name][param] = float(
                check_number(f"{name}.{param}", value, low=spec[1], high=spec[2])
            )
    return chosen


def evaluate(
    records: Any,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    skip: Collection[str] = (),
) -> list[RuleResult]:
    """Run every rule (but those in ``skip``) over ``records``."""
    chosen = rule_parameters(overrides)
    return [RULES[name].check(records, **chosen[name]) for name in RULES if name not in skip]
