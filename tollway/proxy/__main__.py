"""`python -m tollway.proxy`: the lean sidecar process (see tollway.proxy.run)."""

from __future__ import annotations

import sys

from tollway.proxy.run import main

if __name__ == "__main__":
    sys.exit(main())
