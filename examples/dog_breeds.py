"""Dog breeds: tune, check, deploy and evaluate a 133-class classifier.

The data is Udacity's dogImages archive (8,351 photos of 133 breeds, already
split into train/valid/test):
https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip
Unzip it and pass the folder:

    python examples/dog_breeds.py dogImages                          # on this machine
    python examples/dog_breeds.py dogImages --backend sagemaker \\
        --bucket my-bucket --role arn:aws:iam::123456789012:role/SageMakerRole

resnet50 with ImageNet weights is the default; its head is fine-tuned unless
``--trainable`` says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the dogImages folder")
    workflow.add_options(parser, model="resnet50", epochs=4)
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        raise SystemExit(
            f"{args.data} has no train/ folder: pass the unzipped dogImages "
            "folder (train/, valid/, test/, one folder per breed)."
        )
    workflow.run(args, args.data, "datasets/dog-breeds")


if __name__ == "__main__":
    main()
