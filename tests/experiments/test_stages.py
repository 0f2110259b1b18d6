"""pivot_algo.experiments.stages: run() computes once and reads back, a spec mismatch raises, a failure
leaves no file, writes go through a temporary file and os.replace."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pivot_algo.experiments import stages as stages_mod
from pivot_algo.experiments.stages import (
    SpecMismatchError,
    StageCache,
    StageCacheError,
    library_versions,
)

SPEC = {"seed": 0, "method": "sft", "train": {"steps": 20, "lr": 1e-3}}


def test_key_is_12_hex_and_ignores_key_order():
    k = StageCache.key(SPEC)
    assert len(k) == 12 and int(k, 16) >= 0
    assert StageCache.key({"train": {"lr": 1e-3, "steps": 20}, "method": "sft", "seed": 0}) == k
    assert StageCache.key({**SPEC, "seed": 1}) != k
    assert StageCache.key({"xs": (1, 2)}) == StageCache.key({"xs": [1, 2]})  # JSON makes no difference
    with pytest.raises(StageCacheError, match="not plain JSON"):
        StageCache.key({"x": float("nan")})


def test_run_calls_fn_once_then_reads_back(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"success": 0.5, "per_task": (1, 0), "none": None}

    cache = StageCache(tmp_path)
    first = cache.run("seed0__sft", SPEC, fn)
    assert first == {"success": 0.5, "per_task": [1, 0], "none": None}  # what JSON gives back, also the first time
    assert cache.run("seed0__sft", SPEC, fn) == first
    assert cache.ran == ["seed0__sft"]
    resumed = StageCache(tmp_path)  # a new process over the same folder
    assert resumed.run("seed0__sft", dict(reversed(list(SPEC.items()))), fn) == first
    assert len(calls) == 1 and resumed.ran == []
    assert resumed.get("seed0__sft", SPEC) == first
    assert resumed.get("other", SPEC) is None


def test_stored_record_carries_spec_key_versions_and_time(tmp_path):
    cache = StageCache(tmp_path)
    cache.run("s", SPEC, lambda: {"v": float("nan")})
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["spec"] == SPEC and rec["key"] == StageCache.key(SPEC) and rec["name"] == "s"
    assert np.isnan(rec["value"]["v"])
    assert set(rec["versions"]) == {"python", "torch", "transformers", "tokenizers", "numpy"}
    assert rec["versions"]["numpy"] == np.__version__
    assert abs(dt.datetime.fromisoformat(rec["written"]) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert rec["wall_s"] >= 0
    assert cache.record("s") == rec and cache.record("missing") is None


def test_spec_mismatch_raises_and_names_the_keys(tmp_path):
    cache = StageCache(tmp_path)
    cache.run("s", SPEC, lambda: {"v": 1})
    other = {"seed": 0, "method": "sft", "train": {"steps": 40, "lr": 1e-3}, "extra": True}

    def never():
        raise AssertionError("fn must not run when the spec differs")

    with pytest.raises(SpecMismatchError) as err:
        cache.run("s", other, never)
    assert err.value.differing_keys == ["extra", "train.steps"]
    assert "train.steps (stored 20, given 40)" in str(err.value) and "extra (only given: true)" in str(err.value)
    with pytest.raises(SpecMismatchError):
        cache.get("s", {"seed": 0})
    with pytest.raises(SpecMismatchError):
        cache.put("s", other, {"v": 2})  # put does not clobber another spec's value either
    assert cache.get("s", SPEC) == {"v": 1}
    with pytest.raises(SpecMismatchError, match="seed"):
        cache.get("s", {**SPEC, "seed": 0.0 + 1})


def test_exception_in_fn_leaves_no_file(tmp_path):
    cache = StageCache(tmp_path)

    def boom():
        raise RuntimeError("killed mid-stage")

    with pytest.raises(RuntimeError, match="killed"):
        cache.run("s", SPEC, boom)
    assert list(tmp_path.iterdir()) == [] and cache.ran == []
    with pytest.raises(StageCacheError, match="not JSON"):
        cache.run("s", SPEC, lambda: {"path": tmp_path})  # not serialisable: refused before any file exists
    with pytest.raises(StageCacheError, match="must be a dict"):
        cache.run("s", SPEC, lambda: [1, 2])  # type: ignore[arg-type, return-value]
    assert list(tmp_path.iterdir()) == []


def test_put_writes_a_temporary_file_then_replaces_atomically(tmp_path, monkeypatch):
    cache = StageCache(tmp_path)
    cache.put("s", SPEC, {"v": 1})
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        src, dst = str(src), str(dst)
        assert os.path.dirname(src) == str(tmp_path) and src.endswith(".tmp")
        assert json.loads(Path(src).read_text())["value"] == {"v": 2}  # complete before it gets the real name
        assert json.loads(Path(dst).read_text())["value"] == {"v": 1}  # the old value is intact until then
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(stages_mod.os, "replace", spy)
    assert cache.put("s", SPEC, {"v": 2}) == tmp_path / "s.json"
    assert replaced and replaced[0][1] == str(tmp_path / "s.json")
    assert cache.get("s", SPEC) == {"v": 2}

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(stages_mod.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        cache.put("s", SPEC, {"v": 3})
    assert cache.get("s", SPEC) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no temporary file left behind


def test_names_and_unreadable_files(tmp_path):
    cache = StageCache(tmp_path)
    for bad in ("../escape", "a/b", ".hidden", "", "x.tmp"):
        with pytest.raises(StageCacheError, match="stage name"):
            cache.path(bad)
    (tmp_path / "broken.json").write_text("{half")
    with pytest.raises(StageCacheError, match="not JSON"):
        cache.get("broken", SPEC)
    (tmp_path / "old.json").write_text(json.dumps({"success": 1.0}))  # an old format without spec/value
    with pytest.raises(StageCacheError, match="not a stage record"):
        cache.get("old", SPEC)


def test_library_versions_marks_missing_packages(monkeypatch):
    monkeypatch.setattr(stages_mod, "VERSIONED_PACKAGES", ("numpy", "no-such-package-pivotrl"))
    v = library_versions()
    assert v["numpy"] == np.__version__ and v["no-such-package-pivotrl"] is None and v["python"].count(".") == 2
