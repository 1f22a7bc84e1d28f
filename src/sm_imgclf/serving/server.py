"""Moved to :mod:`sm_imgclf.runtime.serving.server`; ``python -m`` on this path keeps working."""

import sys

from sm_imgclf.runtime.serving.server import main, serve

__all__ = ["main", "serve"]

if __name__ == "__main__":
    sys.exit(main())
