"""`make bench`: the whole benchmark on the running local stack (bench/conversion.py says what it measures)."""

import sys

from bench.conversion import main

sys.exit(main())
