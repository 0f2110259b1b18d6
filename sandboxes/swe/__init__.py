"""`python -m sandboxes.swe`: the SWE repository images' command line (the code is in pivot_envs/images/swe/)."""
