"""veRL glue: `compute_score` called the way veRL's reward manager calls a custom reward function
(keyword arguments data_source, solution_str, ground_truth, extra_info, from rows of a parquet file
that `verl_dataset` wrote). veRL itself is not installed: the signature is its documented one."""

from __future__ import annotations

import json
import shutil

import datasets
import gymnasium as gym
import pytest

from pivot_algo.integrations.judging import IntegrationError
from pivot_algo.integrations.verl import (
    InfraFailureError,
    compute_score,
    register_judge,
    verl_dataset,
)
from pivot_algo.pivots_dataset import pivots_to_dataset
from pivot_algo.profiler import StateProfile
from pivot_envs.parsing import render_tool_call
from tests.conftest import require


def _hermes(reference: dict) -> str:
    calls = reference.get("tool_calls") or []
    if not calls:
        return reference.get("content") or ""
    fn = calls[0]["function"]
    args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
    return render_tool_call(fn["name"], args)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is needed by the local sandbox")
    import pivot_envs  # noqa: F401
    from pivot_envs import load_trajectories
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    trajs = load_trajectories(builtin_trajectories("train")[:2])
    profile = [StateProfile(t.id, k, [1.0, 0.0], 0, 1, 1, 0.5, 0.25) for t in trajs for k in (0, 1)]
    path = tmp_path_factory.mktemp("verl") / "train.parquet"
    verl_dataset(pivots_to_dataset(profile, trajs), "PivotTerminal-v0", {"sandbox": "local"}).to_parquet(str(path))
    return trajs, datasets.load_dataset("parquet", data_files=str(path), split="train")


def test_compute_score_as_verl_calls_it(rows):
    trajs, ds = rows
    assert len(ds) == 4 and ds[0]["data_source"] == "pivotrl/PivotTerminal-v0"
    by_id = {t.id: t for t in trajs}
    for row in ds:
        info = row["extra_info"]
        reference = json.loads(row["reward_model"]["ground_truth"])
        assert reference == by_id[info["trajectory_id"]].reference(info["turn"])
        right = compute_score(data_source=row["data_source"], solution_str=_hermes(reference),
                              ground_truth=row["reward_model"]["ground_truth"], extra_info=info)
        assert right == {"score": 1.0, "acc": 1.0}
        wrong = compute_score(data_source=row["data_source"], solution_str="Done.",
                              ground_truth=row["reward_model"]["ground_truth"], extra_info=info)
        assert wrong["score"] == 0.0


def test_bad_rows_and_infra_failures_are_typed_errors_not_zero(rows):
    trajs, ds = rows
    with pytest.raises(IntegrationError, match="trajectory_id"):
        compute_score("pivotrl/x", "Done.", None, {})
    with pytest.raises(IntegrationError, match="register_judge"):
        compute_score("pivotrl/x", "Done.", None, {"trajectory_id": trajs[0].id, "turn": 0, "judge": "nope"})

    from pivot_envs.sandbox import make_backend

    backend = make_backend("local")
    env = gym.make("PivotTerminal-v0", sandbox=backend, disable_env_checker=True)
    try:
        register_judge("lost-sandboxes", env)
        backend.close()  # every state this judge needs is gone
        info = dict(ds[3]["extra_info"], judge="lost-sandboxes")
        with pytest.raises(InfraFailureError, match="infrastructure"):
            compute_score(data_source=ds[3]["data_source"], solution_str="Done.", ground_truth=None, extra_info=info)
    finally:
        env.close()
