"""``python -m sm_imgclf.job --name value ...`` runs a training job."""

import sys

from sm_imgclf.job.main import main

sys.exit(main())
