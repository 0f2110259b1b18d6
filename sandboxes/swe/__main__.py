"""`python -m sandboxes.swe [NAME ...] [--force]`: build the SWE repository images (pivot_envs/images/swe/)."""

import sys

from pivot_envs.images.swe.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
