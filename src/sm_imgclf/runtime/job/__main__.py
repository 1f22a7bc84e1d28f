"""``python -m sm_imgclf.runtime.job --name value ...`` runs a training job."""

import sys

from sm_imgclf.runtime.job.main import main

sys.exit(main())
