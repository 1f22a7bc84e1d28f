"""Check the shipped container-image table against the SageMaker SDK that is installed.

``nox -s image_table`` installs SDK v2 (``sagemaker<3``), runs this, then SDK v3
(``sagemaker>=3``) and runs it again. For every region of the table, both scopes
and both processors, the URI the library builds must equal the SDK's. Exits 1
naming each difference. Nothing here reaches AWS: the SDK reads its own JSON.
"""

from __future__ import annotations

import importlib
import sys

from sm_imgclf.backends.sagemaker.images import (
    FRAMEWORK_VERSION,
    REGISTRIES,
    VERSIONS,
    pytorch_image,
)

INSTANCES = {"cpu": "ml.m5.xlarge", "gpu": "ml.g5.xlarge"}


def sdk_retrieve() -> tuple[str, object]:
    """The installed SDK's major version and its ``image_uris.retrieve``."""
    for module, major in (("sagemaker.core.image_uris", "3"), ("sagemaker.image_uris", "2")):
        try:
            return major, importlib.import_module(module).retrieve
        except ImportError:
            continue
    raise SystemExit("Neither SageMaker SDK v2 nor v3 is installed.")


def main() -> int:
    """Compare every URI; print the differences and a count."""
    major, retrieve = sdk_retrieve()
    image = VERSIONS[FRAMEWORK_VERSION]
    differences, checked = [], 0
    for region in sorted(REGISTRIES):
        for scope in ("training", "inference"):
            for processor, instance in INSTANCES.items():
                ours = pytorch_image(None, scope=scope, region=region, instance_type=instance)
                try:
                    theirs = retrieve(
                        framework="pytorch",
                        region=region,  # type: ignore[operator]
                        version=image.version,
                        py_version=image.py_version,
                        instance_type=instance,
                        image_scope=scope,
                    )
                except ValueError as error:  # a region this SDK release does not know
                    theirs = f"(SDK: {error})"
                checked += 1
                if ours != theirs:
                    differences.append(f"{region} {scope} {processor}: ours {ours}, SDK {theirs}")
    for line in differences:
        print(line)
    print(f"SDK v{major}: {checked} image URIs checked, {len(differences)} different")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
