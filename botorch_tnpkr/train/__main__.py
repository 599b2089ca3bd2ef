from __future__ import annotations

import sys

from botorch_tnpkr.train.cli import main

sys.exit(main())
