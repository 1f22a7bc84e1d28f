"""``python -m sm_imgclf.job`` runs :mod:`sm_imgclf.runtime.job`, where the job program lives."""

import sys

from sm_imgclf.runtime.job.main import main

sys.exit(main())
