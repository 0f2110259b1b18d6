"""Images of the SWE domain's repositories (see repos.py)."""

from sandboxes.swe.repos import REPOS, RepoSpec, build_all, build_repo_image

__all__ = ["REPOS", "RepoSpec", "build_all", "build_repo_image"]
