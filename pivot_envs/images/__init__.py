"""The sandbox images the envs build at run time: the base image and task images (build.py, from
base.Dockerfile and a task's own Dockerfile) and the SWE repositories' images (swe/). Their command
lines: `python -m pivot_envs.images.build`, `python -m pivot_envs.images.swe` (in a source checkout
also `python -m sandboxes.build` / `python -m sandboxes.swe`, thin wrappers)."""
