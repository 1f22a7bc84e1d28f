"""Validate an image folder and upload it: locally by default, or to S3.

    python examples/validate_and_upload.py dogImages datasets/dogs
    python examples/validate_and_upload.py dogImages datasets/dogs --bucket my-bucket

The dog-breed images come from
https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip
(133 classes, 8,351 photos in train/valid/test).
"""

from __future__ import annotations

import argparse
import logging

import sm_imgclf as smi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("prefix")
    parser.add_argument("--bucket", help="upload to this S3 bucket instead of a local session")
    parser.add_argument("--skip-invalid", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    session = smi.SageMakerSession(args.bucket) if args.bucket else smi.LocalSession()
    data = smi.ImageFolderDataset(args.root)
    report = data.validate(progress=True)
    print(report)
    channels = data.upload(session, args.prefix, skip_invalid=args.skip_invalid, progress=True)
    print(channels.summary)
    for split, uri in channels.items():
        print(f"{split:<6} {uri}")


if __name__ == "__main__":
    main()
