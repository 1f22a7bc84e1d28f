"""CIFAR-10: from the python batches to a tuned, checked, deployed classifier.

Download ``cifar-10-python.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html
and extract it; pass the ``cifar-10-batches-py`` folder:

    python examples/cifar10.py cifar-10-batches-py
    python examples/cifar10.py cifar-10-batches-py --backend sagemaker \\
        --bucket my-bucket --role arn:aws:iam::123456789012:role/SageMakerRole

The batches are written once as PNGs (train/valid/test, 10% of each training
class held out for validation), then the path is the dog-breed example's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import workflow

import sm_imgclf as smi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batches", type=Path, help="the cifar-10-batches-py folder")
    workflow.add_options(parser, model="resnet18", epochs=6)
    args = parser.parse_args()
    images = Path(args.workdir) / "cifar10"
    if not (images / "train").is_dir():
        smi.cifar10_to_folder(args.batches, images, valid=0.1)
    workflow.run(args, images, "datasets/cifar10")


if __name__ == "__main__":
    main()
