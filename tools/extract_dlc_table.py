"""Write the dated extract of AWS's container repository that the image-table test reads.

    python tools/extract_dlc_table.py CLONE > tests/data/dlc_images.json

where CLONE is a clone of aws/deep-learning-containers.

It reads, at the clone's HEAD, every SageMaker image of the PyTorch and Ray
lines in ``docs/src/data/`` (and the arm64 ones, SageMaker or not) and the
private-registry accounts of ``docs/reference/region_availability.md``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPOSITORIES = (
    "pytorch",
    "pytorch-training",
    "pytorch-inference",
    "pytorch-training-arm64",
    "pytorch-inference-arm64",
    "ray",
)


def git(clone: Path, *args: str) -> str:
    """Run git in ``clone``; return its output."""
    return subprocess.run(
        ["git", "-C", str(clone), *args], check=True, capture_output=True, text=True
    ).stdout


def images(clone: Path) -> list[dict[str, object]]:
    """Every image file of the repositories above, as its YAML says."""
    found = []
    for path in git(clone, "ls-tree", "-r", "--name-only", "HEAD", "docs/src/data/").split():
        repository = path.split("/")[3]
        if repository not in REPOSITORIES:
            continue
        data = yaml.safe_load(git(clone, "show", f"HEAD:{path}"))
        if data.get("platform") != "sagemaker" and not repository.endswith("arm64"):
            continue
        found.append({"repository": repository, "file": path, **data})
    return found


def accounts(clone: Path) -> dict[str, str]:
    """The registry account of each region, from the Deep Learning Containers table."""
    text = git(clone, "show", "HEAD:docs/reference/region_availability.md")
    table = text.split("## Deep Learning Containers", 1)[1].split("\n## ", 1)[0]
    row = r"^\|[^|]+\|\s*([a-z]{2}(?:-[a-z]+)+-\d)\s*\|\s*(\d{12})\s*\|"
    return dict(re.findall(row, table, re.M))


def main() -> None:
    """Print the extract as JSON."""
    clone = Path(sys.argv[1])
    commit, date = git(clone, "log", "-1", "--format=%H %cs").split()
    extract = {
        "source": "https://github.com/aws/deep-learning-containers",
        "commit": commit,
        "date": date,
        "accounts": accounts(clone),
        "images": images(clone),
    }
    json.dump(extract, sys.stdout, indent=1, sort_keys=True, default=str)
    print()


if __name__ == "__main__":
    main()
