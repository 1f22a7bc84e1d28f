"""``python -m sm_imgclf`` runs the ``sm-imgclf`` command."""

import sys

from sm_imgclf.cli.main import main

sys.exit(main())
