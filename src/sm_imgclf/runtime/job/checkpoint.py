"""Checkpoints written every epoch, atomically, with the previous one kept as a fallback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sm_imgclf.errors import BackendError

LATEST, PREVIOUS = "checkpoint.pth", "checkpoint.prev.pth"


def save(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state``; the last good checkpoint becomes the previous one."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{LATEST}.partial"
    torch.save(state, partial)
    if (folder / LATEST).exists():
        os.replace(folder / LATEST, folder / PREVIOUS)
    os.replace(partial, folder / LATEST)


def load(folder: Path) -> dict[str, Any] | None:
    """Return the newest readable checkpoint, ``None`` if there is none.

    A corrupt latest checkpoint is reported and the previous one used; when
    both are unreadable the job stops with an error naming them, and leaves
    the files in place.
    """
    import torch

    candidates = [folder / name for name in (LATEST, PREVIOUS) if (folder / name).is_file()]
    problems = []
    for path in candidates:
        try:
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "epoch" not in state:
                raise ValueError("not an sm-imgclf checkpoint")
        except Exception as error:
            problems.append(f"{path}: {type(error).__name__}: {error}")
            continue
        if problems:
            print(f"checkpoint: {problems[0]}; resumed from the older {path.name}", flush=True)
        return state
    if problems:
        raise BackendError(
            "Every checkpoint is unreadable:\n  "
            + "\n  ".join(problems)
            + f"\nThey are left in {folder}. Delete them to start the job from scratch."
        )
    return None
