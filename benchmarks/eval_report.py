"""Evaluation report: time to write the HTML report for many classes, and heatmaps per image.

A synthetic evaluation of ``--classes`` classes (133 by default, the dog breeds)
with ``--per-class`` images each is reported twice in one process: the HTML
report (gallery without heatmaps, confused pairs, per-class table, calibration
and latency charts) against the baseline of the two PNG plots ``evaluate(plots=)``
has always written for the same evaluation. Then heatmaps of ``--explain``
images from an untrained ``--model`` package at ``--size`` px, with the report's
gallery built from them, against the plain forward pass of the same images.
Prints seconds and ratios. Target: the report in under a few seconds at 133
classes. Nothing is asserted.

    python benchmarks/eval_report.py [--classes 133] [--per-class 6] [--explain 24]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sm_imgclf.evaluation.evaluate import _score
from sm_imgclf.evaluation.explain import ModelExplainer
from sm_imgclf.evaluation.plots import write_plots
from test_evaluation_report import images, scored_from, softmax, untrained_package


def synthetic(folder: Path, classes: int, per_class: int) -> Any:
    rng = np.random.default_rng(0)
    truths = np.repeat(np.arange(classes), per_class)
    logits = rng.normal(size=(len(truths), classes))
    logits[np.arange(len(truths)), truths] += 2.5
    files = [str(p) for p in images(folder, len(truths))]
    return _score(scored_from(softmax(logits), truths, files))


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def serve_only(explainer: ModelExplainer, files: list[Path]) -> Any:
    """What serving does for the same images: decode, normalise, one forward pass."""
    import torch

    from sm_imgclf.runtime.images import eval_tensor, normalise

    loaded = explainer.loaded
    pixels = torch.stack([eval_tensor(p.read_bytes(), loaded.image_size) for p in files])
    with torch.inference_mode():
        inputs = normalise(pixels, tuple(loaded.manifest["mean"]), tuple(loaded.manifest["std"]))
        return loaded.model(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--explain", type=int, default=24)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        result = synthetic(folder, args.classes, args.per_class)
        plots = timed(lambda: write_plots(result, folder / "plots"))
        page = folder / "eval.html"
        report = timed(lambda: result.report(page))
        print(
            f"{args.classes} classes, {result.images} images: report {report:.2f} s "
            f"({page.stat().st_size / 1e6:.1f} MB) vs the two PNG plots {plots:.2f} s: "
            f"{report / plots:.2f}x"
        )
        package = untrained_package(
            folder / "model",
            tuple(f"c{i:03d}" for i in range(10)),
            size=args.size,
            model=args.model,
        )
        files = images(folder / "explain", args.explain)
        with ModelExplainer(package) as explainer:
            explainer.explain(files[:1])  # loads the model and finds the layer once
            forward = timed(lambda: serve_only(explainer, files))
            heat = timed(lambda: explainer.explain(files))
        print(
            f"heatmaps of {args.explain} images ({args.model}, {args.size} px, "
            f"{explainer.target.method} on {explainer.target.layer}): {heat:.2f} s, "
            f"{heat / args.explain * 1000:.0f} ms per image; {heat / forward:.2f}x serving "
            f"the same images ({forward:.2f} s)"
        )


if __name__ == "__main__":
    main()
