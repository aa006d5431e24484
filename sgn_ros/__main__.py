"""`python -m sgn_ros ...` is the same as the `sgn-ros` console command."""

import sys

from sgn_ros.cli import main

sys.exit(main())
