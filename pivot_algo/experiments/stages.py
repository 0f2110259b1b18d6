"""One resumable stage cache: a stage's value is stored under its name with the spec that produced it.

    cache = StageCache(run_dir / "stages")
    cells = cache.run("seed0__sft", {"seed": 0, "method": "sft", "steps": 20}, lambda: train_and_eval(...))

`run` is idempotent: the first call computes and stores, a later call (in this process or after a
kill and restart) reads the stored value back without calling `fn`. The spec is every input that
decides the value; a stored value is reused only for the same spec: the same name with another spec
raises `SpecMismatchError` naming the keys that differ, never a silent reuse of a stale result.
Every write is atomic (a temporary file in the same folder, then `os.replace`), so a killed run or
an exception inside `fn` leaves either the old file or none, never half of one.

A stage file `root/<name>.json` holds {"name", "key", "spec", "value", "versions", "written"} (and
"wall_s" when written by `run`): `key` is `StageCache.key(spec)`, `versions` the library versions that
computed the value (`library_versions()`), `written` an ISO-8601 UTC time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SpecMismatchError", "StageCache", "StageCacheError", "canonical_json", "library_versions"]

VERSIONED_PACKAGES = ("torch", "transformers", "tokenizers", "numpy")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*")


class StageCacheError(Exception):
    """A stage file that cannot be used as asked (bad name, unreadable file, value not a JSON object)."""


class SpecMismatchError(StageCacheError):
    """The stage's stored spec is not the spec asked for; `differing_keys` names the (dotted) keys that differ."""

    def __init__(self, name: str, path: Path, differing_keys: list[str], detail: list[str]) -> None:
        self.name, self.path, self.differing_keys = name, path, differing_keys
        super().__init__(f"stage {name!r} ({path}) was stored for another spec; keys that differ: "
                         f"{'; '.join(detail)}. Use another name or cache root, or delete the file to recompute.")


def canonical_json(obj: Any) -> str:
    """The one text of a JSON value: sorted keys, no spaces, NaN refused (it would never equal itself)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def library_versions() -> dict[str, str | None]:
    """Versions of python and of the libraries that decide numbers (torch, transformers, tokenizers,
    numpy); None for a library that is not installed."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _short(value: Any) -> str:
    text = canonical_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _diff(stored: Any, given: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, what differs) for every leaf where two canonical JSON values differ."""
    if isinstance(stored, dict) and isinstance(given, dict):
        out: list[tuple[str, str]] = []
        for k in sorted(set(stored) | set(given)):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in given:
                out.append((path, f"{path} (only stored: {_short(stored[k])})"))
            elif k not in stored:
                out.append((path, f"{path} (only given: {_short(given[k])})"))
            else:
                out.extend(_diff(stored[k], given[k], path))
        return out
    if canonical_json(stored) == canonical_json(given):
        return []
    path = prefix or "(whole spec)"
    return [(path, f"{path} (stored {_short(stored)}, given {_short(given)})")]


def _spec_json(spec: dict[str, Any]) -> str:
    if not isinstance(spec, dict):
        raise StageCacheError(f"a stage spec must be a dict, got {type(spec).__name__}")
    try:
        return canonical_json(spec)
    except (TypeError, ValueError) as e:
        raise StageCacheError(f"the stage spec is not plain JSON ({e}): {spec!r}") from e


class StageCache:
    """Stage values as JSON files `root/<name>.json`, each reused only for the spec it was computed with."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ran: list[str] = []  # stages computed by this process (the others were read back)

    @staticmethod
    def key(spec: dict[str, Any]) -> str:
        """12 hex characters of the sha256 of the spec's canonical JSON (key order does not matter)."""
        return hashlib.sha256(_spec_json(spec).encode("utf-8")).hexdigest()[:12]

    def path(self, name: str) -> Path:
        if not _NAME.fullmatch(name) or name.endswith(".tmp"):
            raise StageCacheError(f"stage name {name!r}: use letters, digits and _ . = + - (not a path, not *.tmp)")
        return self.root / f"{name}.json"

    def record(self, name: str) -> dict[str, Any] | None:
        """The whole stored record of `name` (spec, value, versions, ...), or None when there is none."""
        p = self.path(name)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            raise StageCacheError(f"stage {name!r}: {p} is not JSON ({e})") from e
        if not isinstance(rec, dict) or not {"spec", "value"} <= set(rec):
            raise StageCacheError(f"stage {name!r}: {p} is not a stage record (no spec/value)")
        return rec

    def _check(self, name: str, stored: dict[str, Any], spec: dict[str, Any]) -> None:
        given = json.loads(_spec_json(spec))
        diffs = _diff(stored["spec"], given)
        if diffs:
            raise SpecMismatchError(name, self.path(name), [k for k, _ in diffs], [d for _, d in diffs])

    def get(self, name: str, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The stored value of `name` when it was computed for `spec`; None when nothing is stored.
        Raises SpecMismatchError when it was stored for another spec."""
        rec = self.record(name)
        if rec is None:
            return None
        self._check(name, rec, spec)
        value: dict[str, Any] = rec["value"]
        return value

    def put(self, name: str, spec: dict[str, Any], value: dict[str, Any], wall_s: float | None = None) -> Path:
        """Store `value` (a JSON object; NaN allowed) for `spec` under `name`, atomically; returns the file.
        Replaces a value stored for the same spec; raises SpecMismatchError when one for another spec is there."""
        if not isinstance(value, dict):
            raise StageCacheError(f"stage {name!r}: the value must be a dict (a JSON object), got {type(value).__name__}")
        path = self.path(name)
        old = self.record(name)
        if old is not None:
            self._check(name, old, spec)
        rec: dict[str, Any] = {"name": name, "key": self.key(spec), "spec": spec, "value": value,
                               "versions": library_versions(),
                               "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        if wall_s is not None:
            rec["wall_s"] = round(wall_s, 3)
        try:
            text = json.dumps(rec, indent=1, ensure_ascii=False)
        except TypeError as e:  # serialise before any file exists: a bad value leaves nothing behind
            raise StageCacheError(f"stage {name!r}: the value is not JSON ({e})") from e
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be read by others
            os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return path

    def run(self, name: str, spec: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The value of stage `name` for `spec`: read back when stored, else `fn()` stored and returned.
        The value returned is always the stored one (as JSON gives it back: tuples become lists), so a
        first run and a resumed one see the same thing. An exception in `fn` stores nothing."""
        self.key(spec)  # a spec that cannot be stored fails before fn runs, not after
        cached = self.get(name, spec)
        if cached is not None:
            return cached
        t0 = time.perf_counter()
        value = fn()
        self.put(name, spec, value, wall_s=time.perf_counter() - t0)
        self.ran.append(name)
        stored = self.get(name, spec)
        assert stored is not None
        return stored
