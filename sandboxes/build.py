"""`python -m sandboxes.build`: build the sandbox base image (what `make provision` runs). The builder is
pivot_envs/images/build.py, inside the installed package, since the envs build task images at run time."""

import sys

from pivot_envs.images.build import main

if __name__ == "__main__":
    sys.exit(main())
