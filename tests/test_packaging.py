"""What installing the project puts on a user's path: the two packages (no generic top-level
`sandboxes`), with the Dockerfiles the envs build from at run time as package data."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_only_the_project_packages_are_installed():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(REPO), include=include)
    assert {p.split(".")[0] for p in packages} == {"pivot_envs", "pivot_algo"}
    assert {"pivot_envs.images", "pivot_envs.images.swe"} <= set(packages)


def test_the_dockerfiles_the_envs_build_from_are_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    dockerfiles = sorted((REPO / "pivot_envs" / "images").rglob("*Dockerfile"))
    assert [p.name for p in dockerfiles] == ["base.Dockerfile", "checkout.Dockerfile", "repo.Dockerfile"]
    assert all(any(fnmatch.fnmatch(p.name, pat) for pat in patterns) for p in dockerfiles)


def test_installed_code_does_not_import_the_checkouts_sandboxes_folder():
    offenders = []
    for path in [*REPO.glob("pivot_envs/**/*.py"), *REPO.glob("pivot_algo/**/*.py")]:
        if "harbor_tasks" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "sandboxes"]
    assert offenders == []
