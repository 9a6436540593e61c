"""`python -m mcstudy ...`: the study's command line (`python -m mcstudy --help`)."""
import sys

import mcstudy

sys.exit(mcstudy.main())
