"""Getting start states, samples and verdicts out of a `PivotEnv` (the plumbing under `collect`).

`Rollouts` holds a policy and a pivot-mode env (plus, for whole episodes, a factory of episode-mode
envs). Algorithms ask it for:

- `states(trajectory_ids)`: every candidate start state (every assistant turn);
- `demonstration(state)`: prompt ids + the demonstration's assistant turn ids (SFT);
- `sample(states, n, ...)`: n completions per state from the policy, judged by the env's verifier at
  that state (`judge_actions`: one reset per state, not per sample) or by a local judge;
- `episodes(trajectory_ids, n, ...)`: n whole episodes per task from turn 0 (E2E RL, evaluation),
  run in lock-step so that each turn's generation is one batched call.

It also counts what it spends (generated tokens, sample kinds) and sums the envs' cost meters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pivot_algo.policy.base import Completion, Policy
from pivot_envs.base_env import Judgements
from pivot_envs.parsing import ParsedAction, parse_action
from pivot_envs.verdict import Verdict

log = logging.getLogger(__name__)

# A local judge: (sampled texts, reference message, tool schemas) -> verdicts (e.g. exact match). One that
# parses the texts itself returns `Judgements` (verdicts with the parsed actions) so they are not parsed again.
LocalJudge = Callable[[Sequence[str], dict, Sequence[dict]], Sequence[Verdict]]


@dataclasses.dataclass(frozen=True, order=True)
class StartState:
    """A candidate state: the conversation before assistant turn `turn` of trajectory `trajectory_id`."""

    trajectory_id: str
    turn: int


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from any values, the same in every process (unlike `hash`)."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclasses.dataclass
class SampledGroup:
    """n completions at one state and their verdicts."""

    state: StartState
    prompt_ids: list[int]
    completions: list[Completion]
    verdicts: list[Verdict]
    is_tool_call: list[bool]  # the sample parsed as a tool call
    is_invalid: list[bool]  # the sample could not be parsed (bad JSON, unknown tool, ...)

    @property
    def rewards(self) -> list[float]:
        return [v.reward for v in self.verdicts]

    @property
    def masked(self) -> list[bool]:
        return [v.masked for v in self.verdicts]


@dataclasses.dataclass
class EpisodeTurn:
    prompt_ids: list[int]
    completion: Completion


@dataclasses.dataclass
class Episode:
    """One whole episode: the agent's turns (prompt + sampled completion each) and the task reward."""

    trajectory_id: str
    turns: list[EpisodeTurn]
    reward: float = 0.0
    masked: bool = False
    finished: bool = False  # the agent ended it (vs truncated at max_turns)


class Rollouts:
    """Samples and verdicts for algorithms; see the module docstring."""

    max_episode_envs = 64
    """Whole episodes run at once by `episodes` (each holds an env; a sandboxed env holds a container)."""

    def __init__(self, policy: Policy, env: Any, *, episode_env_factory: Callable[[], Any] | None = None):
        self.policy = policy
        self.env = env
        self.episode_env_factory = episode_env_factory
        self._episode_envs: list[Any] = []
        self.generated_tokens = 0
        self.samples = 0
        self.tool_call_samples = 0
        self.message_samples = 0
        self.invalid_samples = 0
        self.judge_seconds = 0.0
        self.cost_offset: dict[str, float] = {}  # restored from a checkpoint

    # ------------------------------------------------------------------ data
    @property
    def base_env(self) -> Any:
        return self.env.unwrapped

    def trajectory(self, trajectory_id: str) -> Any:
        env = self.base_env
        return env.trajectories[env.trajectory_index(trajectory_id)]

    def trajectory_ids(self) -> list[str]:
        return [t.id for t in self.base_env.trajectories]

    def states(self, trajectory_ids: Sequence[str]) -> list[StartState]:
        """Every candidate state (every assistant turn) of the given trajectories, in order."""
        return [StartState(tid, k) for tid in trajectory_ids for k in range(self.trajectory(tid).num_turns)]

    def tools(self, state: StartState) -> list[dict]:
        """The tools `env.reset(options=state)` observes (`obs["tools"]`): an env whose tools change
        mid-conversation (BFCL miss_func holds some back) says so through `tools_at_turn`."""
        traj = self.trajectory(state.trajectory_id)
        tools_at_turn = getattr(self.base_env, "tools_at_turn", None)
        return list(tools_at_turn(traj, state.turn)) if tools_at_turn is not None else list(traj.tools)

    def prompt(self, state: StartState) -> list[int]:
        """Prompt ids at `state`: the same conversation and tools `env.reset(options=state)` observes."""
        traj = self.trajectory(state.trajectory_id)
        return self.policy.prompt_ids(traj.prefix(state.turn), self.tools(state))

    def demonstration(self, state: StartState) -> tuple[list[int], list[int]]:
        """(prompt ids, the demonstration's assistant-turn ids) at `state` (the SFT target)."""
        traj = self.trajectory(state.trajectory_id)
        prefix, tools = traj.prefix(state.turn), self.tools(state)
        return (self.policy.prompt_ids(prefix, tools),
                self.policy.completion_ids(prefix, traj.reference(state.turn), tools))

    # ------------------------------------------------------------------ local rollouts (pivot mode)
    def sample(self, states: Sequence[StartState], n: int, *, max_new_tokens: int, temperature: float = 1.0,
               top_p: float = 1.0, seed: int | None = None, seeds: Sequence[int] | None = None,
               judge: LocalJudge | None = None) -> list[SampledGroup]:
        """n completions per state in one batched `generate` call, then verdicts per state.

        Seeding is per state: `seeds[i]` for state i, or, from `seed`, stable_seed(seed, trajectory,
        turn); so a state's samples do not depend on which other states share the call. States of
        one trajectory in one call share their conversation's KV (HFPolicy.generate)."""
        if not states:
            return []
        if seeds is not None and len(seeds) != len(states):
            raise ValueError(f"seeds needs one seed per state: got {len(seeds)} for {len(states)} states")
        if seeds is None and seed is not None:
            seeds = [stable_seed(seed, s.trajectory_id, s.turn) for s in states]
        prompts = [self.prompt(s) for s in states]
        seeding: dict[str, Any] = {} if seeds is None else {"seeds": list(seeds)}
        generated = self.policy.generate(prompts, n, max_new_tokens=max_new_tokens, temperature=temperature,
                                         top_p=top_p, **seeding)
        groups = []
        t0 = time.perf_counter()
        for state, prompt, completions in zip(states, prompts, generated):
            texts = [c.text for c in completions]
            traj, tools = self.trajectory(state.trajectory_id), self.tools(state)
            if judge is not None:
                local = judge(texts, traj.reference(state.turn), tools)
                verdicts = list(local)
                parsed = (local.actions if isinstance(local, Judgements)
                          else [parse_action(t, self.base_env.parser, list(tools)) for t in texts])
            else:
                self.env.reset(options={"trajectory": state.trajectory_id, "turn": state.turn})
                judged = self.base_env.judge_actions(texts)
                verdicts, parsed = list(judged), judged.actions  # parsed once, by the env
            groups.append(SampledGroup(state, prompt, completions, verdicts,
                                       is_tool_call=[bool(p.tool_calls) for p in parsed],
                                       is_invalid=[p.error is not None for p in parsed]))
            self._count(completions, parsed)
        self.judge_seconds += time.perf_counter() - t0
        return groups

    def _count(self, completions: Sequence[Completion], parsed: Sequence[ParsedAction]) -> None:
        self.samples += len(completions)
        self.generated_tokens += sum(len(c.token_ids) for c in completions)
        self.tool_call_samples += sum(bool(p.tool_calls) for p in parsed)
        self.invalid_samples += sum(p.error is not None for p in parsed)
        self.message_samples += sum(p.is_message for p in parsed)

    # ------------------------------------------------------------------ whole episodes (episode mode)
    def _envs(self, n: int) -> list[Any]:
        if self.episode_env_factory is None:
            raise ValueError("whole episodes need Rollouts(..., episode_env_factory=...) building mode='episode' envs")
        while len(self._episode_envs) < n:
            self._episode_envs.append(self.episode_env_factory())
        return self._episode_envs[:n]

    def episodes(self, trajectory_ids: Sequence[str], n: int, *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[Episode]]:
        """n episodes per task, each from turn 0 until the agent finishes or the env truncates it.
        Every task's episodes advance in lock-step: each turn is one batched generate call over all
        still-running episodes (E2E-RL's groups and evaluation alike). Returns one list of n episodes
        per trajectory id. At most `max_episode_envs` episodes (whole tasks' groups) run at once: each
        holds an env, and a sandboxed env holds a container."""
        per_batch = max(1, self.max_episode_envs // max(n, 1))
        if len(trajectory_ids) > per_batch:
            return [group for i in range(0, len(trajectory_ids), per_batch) for group in self.episodes(
                trajectory_ids[i:i + per_batch], n, max_new_tokens=max_new_tokens, temperature=temperature,
                top_p=top_p, seed=None if seed is None else stable_seed(seed, "batch", i))]
        slots = [tid for tid in trajectory_ids for _ in range(n)]
        envs = self._envs(len(slots))
        episodes = [Episode(tid, []) for tid in slots]
        obs = [env.reset(options={"trajectory": tid, "turn": 0})[0] for env, tid in zip(envs, slots)]
        active = list(range(len(slots)))
        turn = 0
        while active:
            prompts = [self.policy.prompt_ids(obs[j]["messages"], obs[j]["tools"]) for j in active]
            step_seed = None if seed is None else stable_seed(seed, "lockstep", turn)
            completions = [g[0] for g in self.policy.generate(
                prompts, 1, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=step_seed)]
            still, parsed = [], []
            for j, prompt, comp in zip(active, prompts, completions):
                episodes[j].turns.append(EpisodeTurn(prompt, comp))
                obs[j], reward, terminated, truncated, info = envs[j].step(comp.text)
                parsed.append(info["action"])  # as the env parsed it
                if terminated or truncated:
                    episodes[j].reward = float(reward)
                    episodes[j].masked = bool(info.get("masked", False))
                    episodes[j].finished = bool(terminated)
                else:
                    still.append(j)
            self._count(completions, parsed)
            active = still
            turn += 1
        return [episodes[i * n:(i + 1) * n] for i in range(len(trajectory_ids))]

    # ------------------------------------------------------------------ costs
    def costs(self) -> dict[str, float]:
        """Everything spent so far: the envs' cost meters summed, plus generation counters."""
        total: dict[str, float] = {}
        for env in [self.env, *self._episode_envs]:
            for k, v in env.unwrapped.costs.as_dict().items():
                total[k] = total.get(k, 0) + v
        total.update(generated_tokens=self.generated_tokens, samples=self.samples,
                     tool_call_samples=self.tool_call_samples, message_samples=self.message_samples,
                     invalid_samples=self.invalid_samples)
        for k, v in self.cost_offset.items():
            total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        for env in self._episode_envs:
            env.close()
        self._episode_envs.clear()
