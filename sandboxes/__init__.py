"""Command lines of a source checkout for the sandbox images (`python -m sandboxes.build`, `python -m
sandboxes.swe`), Docker provisioning and the docker warm-reset benchmark. Not installed: the image
builder the envs call lives in pivot_envs/images/."""
