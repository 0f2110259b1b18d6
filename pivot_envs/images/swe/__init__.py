"""Images of the SWE domain's repositories (see repos.py; `python -m pivot_envs.images.swe` builds them)."""
