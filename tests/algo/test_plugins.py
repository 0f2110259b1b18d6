"""The plug-in surface: what an outside algorithm needs is importable from `pivot_algo`, and an
algorithm registered in a file outside the package trains through the CLI (`plugins: [file]`)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pivot_algo import cli
from pivot_algo.policy import load_policy
from pivot_envs import save_jsonl

from .toy_env import AdderEnv, make_trajectories

# A complete outside algorithm, written only against the package top level: imitation of the
# demonstration weighted by how often the policy already gets the state wrong (one sample per state).
PLUGIN = textwrap.dedent('''
    import dataclasses

    import pivot_algo


    @dataclasses.dataclass
    class HardImitationConfig:
        states_per_step: int = 4
        """Demonstration turns per step."""


    @pivot_algo.register_algorithm("my_algo")
    class HardImitation(pivot_algo.Algorithm):
        Config = HardImitationConfig

        def collect(self, ctx: pivot_algo.CollectContext) -> pivot_algo.Batch:
            picks = ctx.rng.choice(len(ctx.train_states), size=self.config.states_per_step, replace=False)
            states = [ctx.train_states[int(i)] for i in picks]
            groups = ctx.rollouts.sample(states, 1, max_new_tokens=6, seed=ctx.seed)
            batch = []
            for state, group in zip(states, groups):
                assert isinstance(state, pivot_algo.StartState)
                verdict = group.verdicts[0]
                assert isinstance(verdict, pivot_algo.Verdict)
                prompt, target = ctx.rollouts.demonstration(state)
                weight = 0.5 if verdict.reward == 1.0 else 1.0   # states the policy misses count double
                batch.append(pivot_algo.TrainGroup(prompt, [target], advantages=[weight]))
            return pivot_algo.Batch(batch, metrics={"charts/mean_reward": sum(g.rewards[0] for g in groups) / len(groups)})

        def loss(self, policy, batch):
            total, tokens = 0.0, 0
            for g in batch.groups:
                lp = policy.group_logprobs(g.prompt_ids, g.completions)
                total = total - (lp.logprobs * lp.mask).sum() * g.advantages[0]
                tokens += int(lp.mask.sum())
            loss = total / max(tokens, 1)
            return loss, {"losses/weighted_nll": float(loss.detach())}
''')


def test_the_plugin_types_are_importable_from_the_top_level():
    code = ("import sys, pivot_algo; assert 'torch' not in sys.modules, 'import pivot_algo pulled torch'; "
            "from pivot_algo import Algorithm, Batch, TrainGroup, CollectContext, StartState, SampledGroup, "
            "Verdict, register_algorithm, list_algorithms, load_plugins; "
            "from pivot_algo.algorithms.base import Algorithm as A; assert Algorithm is A; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_missing_plugin_is_a_typed_error_that_names_it(tmp_path):
    from pivot_algo import PluginError, load_plugins

    with pytest.raises(PluginError, match="does not exist"):
        load_plugins([str(tmp_path / "nope.py")])
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        load_plugins("no_such_module_xyz")
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="boom"):
        load_plugins([str(bad)])


def test_an_outside_plugin_trains_through_the_cli(tmp_path, capsys):
    plugin = tmp_path / "outside" / "my_algo.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    save_jsonl(make_trajectories(range(8)), tmp_path / "adder.jsonl")
    cli.main(["train", "--config", "tiny", "algo=my_algo", f"plugins=[{plugin}]",
              f"env.id={AdderEnv.__module__}:AdderEnv", "env.kwargs={}", f"env.trajectories={tmp_path / 'adder.jsonl'}",
              f"output_dir={tmp_path / 'runs'}", "progress=false", "trainers.my_algo.steps=2",
              "trainers.my_algo.learning_rate=0.003", "trainers.my_algo.tensorboard=false"])
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 2
    import pivot_algo

    assert "my_algo" in pivot_algo.list_algorithms()
    rows = [json.loads(x) for x in (Path(out["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["losses/weighted_nll"] > 0 for r in rows)
    assert rows[1]["losses/weighted_nll"] != rows[0]["losses/weighted_nll"]
    trained = load_policy(out["policy"]).model.state_dict()
    start = load_policy("tiny").model.state_dict()
    changed = sum(not torch.equal(trained[k], start[k]) for k in start)
    assert changed > 0, "the plug-in's updates did not change the weights"
    config = json.loads((Path(out["run_dir"]) / "config.json").read_text())
    assert config["algorithm"]["name"] == "my_algo" and config["algorithm"]["states_per_step"] == 4
