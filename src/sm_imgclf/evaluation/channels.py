"""A labelled folder to evaluate on, from a path or the channel URI an upload returned."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from sm_imgclf._cache import cache_path
from sm_imgclf._params import bad_value
from sm_imgclf.contracts.storage import Store


def channel_folder(location: str | Path, store: Store) -> Path:
    """A local folder holding the images at ``location``.

    A path or ``file://`` URI is used where it is. A URI of ``store`` (an
    ``s3://`` channel of a SageMaker session) is copied under
    ``$XDG_CACHE_HOME/sm-imgclf/channels/`` first: it stays there for the
    evaluation report's gallery, and a second evaluation copies only what changed.

    Raises:
        ConfigurationError: ``location`` is a URI this session's store does not hold.
    """
    text = str(location)
    if isinstance(location, Path) or "://" not in text:
        return Path(location)
    if text.startswith("file://"):
        return Path(url2pathname(urlsplit(text).path))
    root = store.uri("")
    if not text.startswith(root):
        raise bad_value(
            "folder",
            f"a folder, a file:// URI or a URI under {root}",
            text,
            "Evaluate on a channel this session uploaded, or download it first.",
        )
    prefix = text.removeprefix(root).strip("/") + "/"
    folder = cache_path("channels") / hashlib.sha256(text.encode()).hexdigest()[:16]
    for key, info in sorted(store.list_objects(prefix).items()):
        target = folder / key.removeprefix(prefix)
        if not target.is_file() or target.stat().st_size != info.size:
            target.parent.mkdir(parents=True, exist_ok=True)
            store.get_file(key, target)
    return folder
