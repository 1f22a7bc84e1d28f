"""Why a model decided: class-activation heatmaps from a model package, on the user's machine.

Heatmaps need the model, not an endpoint: :class:`ModelExplainer` loads a model
package (from a training job, a ``model.tar.gz``, an extracted folder, or a
``file://`` / ``s3://`` URI) with the same handler that serves it, and
preprocesses images exactly as serving does. A CPU is enough for a few dozen images.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from sm_imgclf._lazy import require
from sm_imgclf._params import bad_value
from sm_imgclf.contracts.deploy import DEFAULT_TOP_K
from sm_imgclf.errors import ConfigurationError

if TYPE_CHECKING:
    from PIL import Image

    from sm_imgclf.runtime.explain import Target
    from sm_imgclf.runtime.serving.handler import LoadedModel
    from sm_imgclf.session import Session


class _Job(Protocol):
    """What the explainer needs of a :class:`~sm_imgclf.TrainingJob`."""

    name: str
    session: Session

    @property
    def model_uri(self) -> str | None: ...

    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class Explanation:
    """Where the model looked when it scored one image for one class.

    Attributes:
        source: The image's path, or ``"image N"`` for in-memory images.
        class_id: The class explained (by default the predicted one).
        label: Its display name.
        score: The model's probability for it.
        top_k: The best classes as ``(label, probability)`` pairs, best first.
        method: ``"grad-cam"`` or ``"input-gradient"``.
        layer: The layer Grad-CAM read, if any.
        image: The square crop the model saw (a PIL image).
        heatmap: ``H x W`` float array in [0, 1] over :attr:`image`.
    """

    source: str
    class_id: str
    label: str
    score: float
    top_k: tuple[tuple[str, float], ...]
    method: str
    layer: str | None
    image: Image.Image
    heatmap: Any

    def overlay(self, *, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
        """The image with the heatmap blended over it (``alpha`` is the heatmap's weight)."""
        if not 0.0 <= alpha <= 1.0:
            raise bad_value("alpha", "a weight between 0 and 1", alpha)
        import numpy as np
        from PIL import Image

        matplotlib = require("matplotlib", extra="plots")
        colours = matplotlib.colormaps[colormap](self.heatmap)[..., :3]
        base = np.asarray(self.image, dtype=np.float32) / 255.0
        blended = (1 - alpha) * base + alpha * colours
        return Image.fromarray((blended * 255).round().astype(np.uint8))

    def png(self, *, alpha: float = 0.45) -> bytes:
        """The overlay as PNG bytes."""
        buffer = io.BytesIO()
        self.overlay(alpha=alpha).save(buffer, format="PNG")
        return buffer.getvalue()

    def save(self, path: str | Path, *, alpha: float = 0.45) -> Path:
        """Write the overlay to ``path`` (any format Pillow knows by the suffix)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.overlay(alpha=alpha).save(target)
        return target


class ModelExplainer:
    """Loads a model package once and explains any number of images with it.

    Args:
        model: A :class:`~sm_imgclf.TrainingJob`, a ``model.tar.gz``, an extracted
            package folder, or a ``file://`` / ``s3://`` URI of a package.
        session: Fetches ``s3://`` packages (a job brings its own session).

    Example:
        >>> explainer = ModelExplainer(job)                       # doctest: +SKIP
        >>> explainer.explain(["Penny.jpg"])[0].save("why.png")   # doctest: +SKIP
    """

    def __init__(self, model: _Job | str | Path, *, session: Session | None = None) -> None:
        self.model, self.session = model, session
        self._temp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> ModelExplainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove what was downloaded or extracted."""
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    @cached_property
    def loaded(self) -> LoadedModel:
        """The model, rebuilt from its manifest by the serving handler."""
        from sm_imgclf.runtime.serving.handler import model_fn

        return model_fn(str(self._package_folder()))

    @cached_property
    def target(self) -> Target:
        """Which method and layer this model's heatmaps use."""
        from sm_imgclf.runtime.explain import find_target

        return find_target(self.loaded.model, self.loaded.image_size)

    def explain(
        self,
        images: Any,
        *,
        classes: Sequence[str | None] | None = None,
        top_k: int = DEFAULT_TOP_K,
        batch_size: int = 16,
    ) -> list[Explanation]:
        """Heatmaps of each image for its predicted class, or for the class given.

        Args:
            images: A path, bytes, PIL image or uint8 array, or a list of them.
            classes: Per image, a class id to explain (``None``: the predicted class).
            top_k: Classes listed with each explanation.
            batch_size: Images per forward and backward pass.

        Raises:
            ConfigurationError: ``classes`` has the wrong length or names an unknown class.
        """
        if not isinstance(images, list | tuple):
            images = [images]  # one image, not a sequence of characters or pixel rows
        wanted = list(classes) if classes is not None else [None] * len(images)
        if len(wanted) != len(images):
            raise bad_value(
                "classes",
                f"one class id (or None) per image ({len(images)})",
                f"{len(wanted)} entries",
            )
        indices = [self._class_index(c) for c in wanted]
        found: list[Explanation] = []
        for start in range(0, len(images), max(1, batch_size)):
            found += self._batch(
                images[start : start + batch_size],
                indices[start : start + batch_size],
                start,
                top_k,
            )
        return found

    def _batch(
        self, images: Sequence[Any], indices: list[int | None], offset: int, top_k: int
    ) -> list[Explanation]:
        import torch

        from sm_imgclf._inputs import encode
        from sm_imgclf.runtime.explain import heatmaps
        from sm_imgclf.runtime.images import eval_tensor, normalise

        loaded, manifest = self.loaded, self.loaded.manifest
        pixels = torch.stack([eval_tensor(encode(item), loaded.image_size) for item in images])
        inputs = normalise(
            pixels.to(loaded.device), tuple(manifest["mean"]), tuple(manifest["std"])
        )
        with torch.inference_mode():
            probabilities = torch.softmax(loaded.model(inputs).float(), dim=1).cpu()
        chosen = torch.tensor(
            [
                int(probabilities[i].argmax()) if index is None else index
                for i, index in enumerate(indices)
            ]
        )
        maps = heatmaps(loaded.model, inputs, chosen.to(loaded.device), self.target).cpu()
        return [
            self._one(item, offset + i, pixels[i], maps[i], probabilities[i], int(chosen[i]), top_k)
            for i, item in enumerate(images)
        ]

    def _one(
        self,
        item: Any,
        number: int,
        pixels: Any,
        heatmap: Any,
        probabilities: Any,
        index: int,
        top_k: int,
    ) -> Explanation:
        from PIL import Image

        ids, names = self.loaded.manifest["class_ids"], self.loaded.manifest["class_names"]
        scores, best = probabilities.topk(max(1, min(top_k, len(ids))))
        return Explanation(
            source=str(item) if isinstance(item, str | Path) else f"image {number}",
            class_id=ids[index],
            label=names[index],
            score=float(probabilities[index]),
            top_k=tuple((names[int(i)], float(p)) for p, i in zip(scores, best, strict=True)),
            method=self.target.method,
            layer=self.target.layer,
            image=Image.fromarray(pixels.permute(1, 2, 0).numpy()),
            heatmap=heatmap.numpy(),
        )

    def _class_index(self, class_id: str | None) -> int | None:
        if class_id is None:
            return None
        ids = list(self.loaded.manifest["class_ids"])
        if class_id not in ids:
            raise bad_value("classes", f"class ids of this model, such as {ids[:5]}", class_id)
        return ids.index(class_id)

    def _package_folder(self) -> Path:
        from sm_imgclf._archive import safe_extract

        source = self._local_source()
        if source.is_dir():
            return source
        return safe_extract(source, self._temporary() / "model")

    def _local_source(self) -> Path:
        model = self.model
        session = self.session
        if not isinstance(model, str | Path):  # a TrainingJob
            session, uri = model.session, model.model_uri
            if uri is None:
                raise ConfigurationError(
                    f"Job {model.name!r} has no model package yet "
                    f"(status {model.status}); explain it once it completed."
                )
            model = uri
        text = str(model)
        if text.startswith("file://") or "://" not in text:
            path = Path(url2pathname(urlsplit(text).path)) if "://" in text else Path(text)
            if not path.exists():
                raise bad_value("model", "a model.tar.gz, a package folder or its URI", text)
            return path
        if session is None:
            raise bad_value(
                "session",
                f"a session that can fetch {text}",
                None,
                "Pass session= (or a TrainingJob) to explain a remote package.",
            )
        return session.backend.fetch_model(text, self._temporary())

    def _temporary(self) -> Path:
        if self._temp is None:
            self._temp = tempfile.TemporaryDirectory(prefix="sm-imgclf-explain-")
        return Path(self._temp.name)
