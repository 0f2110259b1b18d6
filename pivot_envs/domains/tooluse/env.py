"""`PivotToolUse-v0`: BFCL v4 multi-turn function calling, resettable to any turn.

## Description
Each trajectory is one BFCL multi-turn entry (base, long_context, miss_func, miss_param) converted by
`bfcl.py`: a user asks for things over several turns; the assistant calls functions of stateful
Python backends (a file system, a messaging app, a trading bot, a travel API, ...). Turn k is the k-th
assistant message of the demonstration: one ground-truth call, or the closing / clarifying message of
a user turn.

## Action Space
`AssistantActionSpace`: model text (Hermes `<tool_call>{json}</tool_call>` by default) or an assistant
message dict.

## Observation Space
`ConversationSpace`: `{"messages": conversation so far, "tools": the functions available now}`. For
miss_func entries the held-out functions appear only from the turn that adds them.

## Rewards
- `mode="pivot"`: 1 when the verifier (`verifier=`: functional | canonical | execution | paper | exact,
  see `verifier.py`) says the action is equivalent to the demonstration's, else 0 (reason in
  `info["reason"]`). A backend failure that is not the action's fault is masked (`info["masked"]`).
  Where the demonstration answers with a message, a reply earns 1 only for its content (`messages.py`:
  a closing reply recalls the values the turn's result returned, a clarifying one names what is
  missing), so a constant reply ("ok", "Done.") earns 0.
- `mode="episode"`: BFCL's multi-turn check over the user turns the agent finished: after each turn
  with ground truth, the backends' public state equals the ground truth's state after that turn AND every
  ground-truth output of that turn is among the outputs the agent has received so far (BFCL's response
  checker); after a turn whose ground truth is empty the agent must not have called anything. 1 when
  every turn passes and all turns were finished, else 0 (`info["turn_checks"]`).

## Backend-free data
Tool-use trajectories from anywhere (chat JSONL, ShareGPT, NeMo-Gym rows: `pivot_envs/formats/`) with
any tool schemas and no executable backend: their task has no `involved_classes`, and everything
BFCL records in the task (`user_turns`, `turn_of_step`, `message_turns`, `defaults`) is derived from
`messages` and the tools' JSON schemas (`turns.py`). Pivot mode judges without execution (`canonical`,
which `functional` reduces to, `paper`, `exact`; `execution` is refused with `BackendRequiredError`).
Episode mode follows the demonstration: an action the verifier accepts at the demonstration's next
turn gets that turn's recorded tool outputs (or the next user message), the first one it rejects
ends the agent's chance; reward 1 when the agent reaches the demonstration's end.

## Starting State
The backends after replaying the demonstration's calls 0..k-1 on fresh instances built from the entry's
`initial_config` (states are pickled and cached by (task, hash of actions 0..k-1), so a warm reset is a
dictionary lookup).

## Episode End
Pivot: after one step. Episode: terminated when the agent answers the last user turn with a message;
truncated at `max_turns` agent actions.

## Arguments
`trajectories` (None = the converted BFCL suite), `categories` / `limit` (for the built-in suite),
`verifier`, `message_policy` ("content" | "any"), `call_timeout_s` (deadline of one backend request),
`extra_backends` ({class: .py path} for backends beyond BFCL's), `sandbox` (accepted for API symmetry
with the other domains and ignored: the backends are pure Python objects and always run in a child
worker process, which is the isolation that matters here: a call that never returns is killed with its
process), plus the `PivotEnv` arguments (`reset_to_turn`, `trajectory`, `mode`, `parser`, `max_turns`,
`verdict_cache`).

## Examples
    env = gym.make("PivotToolUse-v0", categories=["base"], reset_to_turn=2)
    obs, info = env.reset(options={"trajectory": "multi_turn_base_0", "turn": 1})
    obs, r, term, trunc, info = env.step(info["reference"])   # r == 1.0
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

from pivot_envs.base_env import PivotEnv
from pivot_envs.domains.tooluse import bfcl, turns
from pivot_envs.domains.tooluse.backends import (
    ERROR_PREFIX,
    BackendWorker,
    RunResult,
    Spec,
    WorkerTimeout,
    state_diff,
)
from pivot_envs.domains.tooluse.messages import MessageTurn, message_turn, schema_words
from pivot_envs.errors import BackendRequiredError, ReplayError, SandboxError
from pivot_envs.parsing import ParsedAction, parse_action
from pivot_envs.registration import spec_of_domain
from pivot_envs.trajectory import Trajectory, action_hash
from pivot_envs.verdict import Verdict

log = logging.getLogger(__name__)


class SnapshotCache:
    """(task key, hash of actions 0..k-1) -> (pickled backend state, fingerprint). LRU, bounded in bytes.
    Thread-safe; shared by all tool-use envs of a process (keys are content hashes, values immutable)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[bytes, dict[str, str]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        with self._lock:
            v = self._data.get(key)
            if v is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: str, blob: bytes, fp: dict[str, str]) -> None:
        with self._lock:
            if key in self._data:
                return
            self._data[key] = (blob, fp)
            self._bytes += len(blob)
            while self._bytes > self.max_bytes and len(self._data) > 1:
                _, (b, _) = self._data.popitem(last=False)
                self._bytes -= len(b)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)


SNAPSHOTS = SnapshotCache()


@dataclasses.dataclass
class ToolUseState:
    """The live state at turn k (pivot) or during an episode. Holds the pickled backend state; every
    execution sends it to the worker and gets the next one back."""

    env: ToolUseEnv
    traj: Trajectory
    k: int
    blob: bytes
    fingerprint: dict[str, str]
    bfcl_turn: int
    key: str
    # episode bookkeeping
    outputs_so_far: list[str] = dataclasses.field(default_factory=list)
    calls_this_turn: int = 0
    turn_checks: list[dict] = dataclasses.field(default_factory=list)
    finished: bool = False
    off_script: str | None = None  # backend-free episodes: why the agent left the demonstration
    _ref: dict[str, RunResult] = dataclasses.field(default_factory=dict)

    # --- what the verifier reads (verifier.ToolUseStateLike) ---
    @property
    def tools_by_name(self) -> dict[str, dict]:
        return self.env.tools_by_name(self.traj)

    @property
    def defaults(self) -> dict[str, dict[str, Any]]:
        return self.env.defaults_of(self.traj)

    @property
    def has_backend(self) -> bool:
        return turns.has_backend(self.traj)

    @property
    def allowed(self) -> list[str]:
        return bfcl.available_functions(self.traj, self.bfcl_turn)

    @property
    def message_kind(self) -> str | None:
        return turns.message_kind(self.traj, self.k)

    @property
    def message_turn(self) -> MessageTurn:
        return self.env.message_turn_of(self.traj, self.k)

    @property
    def spec(self) -> Spec:
        return self.env.spec_of(self.traj)

    def run_calls(self, calls: list[tuple[str, dict]]) -> RunResult:
        """Run calls on a copy of this state (this state is unchanged)."""
        self.env.costs.rollout_turns += 1
        return self.env.worker.run(self.blob, self.spec, calls, self.allowed)

    def reference_result(self, calls: list[tuple[str, dict]]) -> RunResult:
        """Run the reference calls on a copy of this state, once per state."""
        key = bfcl_key(calls)
        if key not in self._ref:
            self._ref[key] = self.run_calls(calls)
        return self._ref[key]


def bfcl_key(calls: list[tuple[str, dict]]) -> str:
    import json

    return json.dumps(calls, sort_keys=True, default=str)


class ToolUseEnv(PivotEnv):
    """BFCL multi-turn function calling (see module docstring for the Gymnasium headings)."""

    domain = "tooluse"

    def __init__(self, trajectories: Any = None, *, categories: Iterable[str] = bfcl.CATEGORIES,
                 limit: int | None = None, verifier: str = "functional", message_policy: str | None = None,
                 call_timeout_s: float = 10.0, extra_backends: dict[str, str] | None = None,
                 sandbox: str | None = None, snapshot_cache: SnapshotCache | None = None, **kwargs: Any):
        self.categories = tuple(categories)
        self.limit = limit
        self.sandbox = sandbox  # accepted for symmetry; see module docstring
        self.message_policy = message_policy
        self.verifier = spec_of_domain(self.domain).build_verifier(self, verifier)
        self.worker = BackendWorker(call_timeout_s, extra_backends)
        self.snapshots = snapshot_cache if snapshot_cache is not None else SNAPSHOTS
        self._task_keys: dict[str, str] = {}
        self._specs: dict[str, Spec] = {}
        self._tool_maps: dict[str, dict[str, dict]] = {}
        self._message_turns: dict[tuple[str, int], MessageTurn] = {}
        self._defaults: dict[str, dict[str, dict[str, Any]]] = {}
        super().__init__(trajectories, **kwargs)
        self._check_backend_free()

    def _check_backend_free(self) -> None:
        """Backend-free trajectories (no `task["involved_classes"]`) can only be judged, never run: say so
        at construction rather than at the first verdict."""
        free = next((t for t in self.trajectories if not turns.has_backend(t)), None)
        if free is None:
            return
        if getattr(self.verifier, "name", None) == "execution":
            raise BackendRequiredError(
                f"verifier='execution' runs both actions on the tool backends, and trajectory {free.id!r} has none "
                "(its task names no involved_classes): use verifier='canonical', 'paper' or 'exact' (or the "
                "default 'functional', which is canonical on backend-free data), or give the task a backend")

    # ------------------------------------------------------------------ helpers
    def default_trajectories(self) -> list[Trajectory | dict]:
        return list(bfcl.load_suite(self.categories, self.limit))

    def task_key(self, traj: Trajectory) -> str:
        if traj.id not in self._task_keys:
            self._task_keys[traj.id] = traj.task_key()
        return self._task_keys[traj.id]

    def spec_of(self, traj: Trajectory) -> Spec:
        if traj.id not in self._specs:
            self._specs[traj.id] = Spec.of(traj.task)
        return self._specs[traj.id]

    def tools_by_name(self, traj: Trajectory) -> dict[str, dict]:
        if traj.id not in self._tool_maps:
            self._tool_maps[traj.id] = {t["function"]["name"]: t for t in traj.tools}
        return self._tool_maps[traj.id]

    def defaults_of(self, traj: Trajectory) -> dict[str, dict[str, Any]]:
        """{function: {parameter: default}}: the task's table over the tools' JSON-schema defaults."""
        if traj.id not in self._defaults:
            self._defaults[traj.id] = turns.defaults(traj)
        return self._defaults[traj.id]

    def message_turn_of(self, traj: Trajectory, k: int) -> MessageTurn:
        """What the message rules need at turn k (cached per trajectory and turn)."""
        key = (traj.id, k)
        if key not in self._message_turns:
            kind = turns.message_kind(traj, k)
            targets = traj.task.get("clarify_targets", {}).get(str(k))
            self._message_turns[key] = message_turn(traj.messages, traj.assistant_indices[k], kind, traj.tools,
                                                    targets, self.schema_vocabulary)
        return self._message_turns[key]

    @functools.cached_property
    def schema_vocabulary(self) -> frozenset[str]:
        """Name words of every function and parameter in this env's trajectories (the clarifying rule
        counts a reply that lists many of them as guessing)."""
        unique = {t["function"]["name"]: t for traj in self.trajectories for t in traj.tools}
        return frozenset(schema_words(unique.values()))

    def tools_at_turn(self, traj: Trajectory, k: int) -> list[dict]:
        """The tools `obs["tools"]` shows at turn k of `traj` (what a prompt for that turn must render)."""
        return bfcl.tools_at(traj, bfcl.bfcl_turn_of(traj, k))

    def snapshot_key(self, traj: Trajectory, k: int) -> str:
        return f"{self.task_key(traj)}:{action_hash(traj.actions_before(k))}"

    def state_at(self, traj: Trajectory, k: int) -> tuple[bytes, dict[str, str]]:
        """Pickled backend state after the demonstration's actions 0..k-1 (cached; a miss replays from
        the nearest cached earlier turn and caches every state on the way)."""
        if not turns.has_backend(traj):  # nothing to run: the state is the conversation itself
            return b"", {}
        hit = self.snapshots.get(self.snapshot_key(traj, k))
        if hit is not None:
            return hit
        start, blob = 0, None
        for j in range(k - 1, 0, -1):
            prev = self.snapshots.get(self.snapshot_key(traj, j))
            if prev is not None:
                start, blob = j, prev[0]
                break
        steps = bfcl.steps_before(traj, k)[start:]
        allowed = [t["function"]["name"] for t in traj.tools]  # the demonstration may call every function
        try:
            if not steps:  # turn 0: a fresh state
                results = self.worker.replay(None, self.spec_of(traj), [[]], allowed)
            else:
                results = self.worker.replay(blob, self.spec_of(traj), steps, allowed)
        except SandboxError as e:
            raise ReplayError(f"replaying {traj.id!r} to turn {k} failed: {e}") from e
        self.costs.replay_turns += sum(len(s) for s in steps)
        for j, res in enumerate(results, start=start + 1 if steps else 0):
            self.snapshots.put(self.snapshot_key(traj, j), res.blob, res.fingerprint)
            self._check_replay(traj, j, res)
        return results[-1].blob, results[-1].fingerprint

    def _check_replay(self, traj: Trajectory, j: int, res: RunResult) -> None:
        """Recorded tool outputs of step j-1 must match the replay (else the data and backend disagree)."""
        if j == 0:
            return
        recorded = [m["content"] for m in traj.tool_outputs_after(j - 1)]
        if recorded and recorded != res.outputs:
            log.warning("trajectory %s turn %d: replayed outputs %s differ from recorded %s",
                        traj.id, j - 1, [o[:80] for o in res.outputs], [o[:80] for o in recorded])

    # ------------------------------------------------------------------ PivotEnv hooks
    def load_state(self, traj: Trajectory, k: int) -> ToolUseState:
        blob, fp = self.state_at(traj, k)
        state = ToolUseState(self, traj, k, blob, fp, bfcl.bfcl_turn_of(traj, k), self.snapshot_key(traj, k))
        # episode mode: what the agent "has received" in the current BFCL turn includes the demonstration's
        # outputs before k (BFCL's response check looks at all outputs so far)
        state.outputs_so_far = [m["content"] for m in traj.messages[: traj.assistant_indices[k]] if m["role"] == "tool"]
        return state

    def state_key(self, state: ToolUseState) -> str:
        v = self.verifier  # a verifier object passed in may have neither setting
        return f"{state.key}:{state.k}:{getattr(v, 'name', type(v).__qualname__)}:{getattr(v, 'message_policy', '')}"

    def judge(self, state: ToolUseState, action: ParsedAction, reference: dict) -> Verdict:
        return self.verifier.judge(state, action, reference)

    def execute(self, state: ToolUseState, action: ParsedAction) -> list[dict]:
        if not turns.has_backend(state.traj):
            return self._follow_demonstration(state, action)
        calls = [(c.name, c.arguments) for c in action.tool_calls]
        self.costs.rollout_turns += 1
        try:
            res = self.worker.run(state.blob, state.spec, calls, state.allowed)
            outputs = res.outputs
            state.blob, state.fingerprint = res.blob, res.fingerprint
        except WorkerTimeout as e:  # the agent's call hung: its output says so; the state is unchanged
            outputs = [f"{ERROR_PREFIX}{e}"] * len(calls)
        state.outputs_so_far.extend(outputs)
        state.calls_this_turn += len(calls)
        return [{"role": "tool", "tool_call_id": c.id or f"call_{i}", "name": c.name, "content": out}
                for i, (c, out) in enumerate(zip(action.tool_calls, outputs))]

    # ------------------------------------------------------------------ backend-free episodes
    # Nothing can run, so an episode follows the demonstration: a step the verifier judges equivalent
    # to the demonstration's next action gets that action's recorded tool outputs (or, for a message,
    # the next user message); the first step that is not ends the agent's chances (reward 0).
    def _on_script(self, state: ToolUseState, action: ParsedAction) -> bool:
        if state.off_script is not None:
            return False
        if state.k >= state.traj.num_turns:
            state.off_script = "the demonstration had already ended"
            return False
        verdict = self.verifier.judge(state, action, state.traj.reference(state.k))
        if not verdict.equivalent:
            state.off_script = f"turn {state.k}: {verdict.reason}"
        return verdict.equivalent

    def _follow_demonstration(self, state: ToolUseState, action: ParsedAction) -> list[dict]:
        if self._on_script(state, action):
            outputs = [m["content"] for m in state.traj.tool_outputs_after(state.k)]
            state.k += 1
        else:
            refused = f"{ERROR_PREFIX}this call differs from the demonstration and the data has no backend to run it"
            outputs = [refused] * len(action.tool_calls)
        outputs += [""] * (len(action.tool_calls) - len(outputs))
        return [{"role": "tool", "tool_call_id": c.id or f"call_{i}", "name": c.name, "content": out}
                for i, (c, out) in enumerate(zip(action.tool_calls, outputs))]

    def _next_demonstration_user(self, state: ToolUseState) -> str | None:
        action = parse_action(self._messages[-1])
        if not self._on_script(state, action):
            state.finished = True
            return None
        traj, state.k = state.traj, state.k + 1
        if state.k >= traj.num_turns:
            state.finished = True
            return None
        between = traj.messages[traj.assistant_indices[state.k - 1] + 1: traj.assistant_indices[state.k]]
        return "\n".join(m.get("content") or "" for m in between if m["role"] == "user") or "Go on."

    def next_user_message(self, state: ToolUseState) -> str | None:
        if not turns.has_backend(state.traj):
            return self._next_demonstration_user(state)
        state.turn_checks.append(self._check_turn(state, state.bfcl_turn))
        state.bfcl_turn += 1
        state.calls_this_turn = 0
        user_turns = turns.user_turns(state.traj)
        if state.bfcl_turn >= len(user_turns):
            state.finished = True
            return None
        return "\n".join(m["content"] for m in user_turns[state.bfcl_turn])

    def _turn_end_step(self, traj: Trajectory, t: int) -> int:
        """Assistant index right after BFCL turn t's closing message."""
        steps = turns.turn_of_step(traj)
        return max(i for i, s in enumerate(steps) if s == t) + 1

    def _check_turn(self, state: ToolUseState, t: int) -> dict:
        """BFCL's per-turn check: state and response (or, for an empty ground truth, no calls)."""
        traj = state.traj
        gt = traj.task["ground_truth"][t]
        if not gt:
            ok = state.calls_this_turn == 0
            return {"turn": t, "ok": ok, "reason": "no call, as required" if ok else
                    f"{state.calls_this_turn} call(s) where the request could not be done"}
        end = self._turn_end_step(traj, t)
        _, gt_fp = self.state_at(traj, end)
        diff = state_diff(state.fingerprint, gt_fp)
        if diff:
            return {"turn": t, "ok": False, "reason": f"state differs from the ground truth in {diff}"}
        gt_outputs = [m["content"] for m in traj.messages[: traj.assistant_indices[end - 1]]
                      if m["role"] == "tool"][-len(gt):]
        missing = list((Counter(gt_outputs) - Counter(state.outputs_so_far)).elements())
        if missing:
            return {"turn": t, "ok": False, "reason": f"ground-truth outputs not received: {[m[:100] for m in missing]}"}
        return {"turn": t, "ok": True, "reason": "state and responses match"}

    def episode_reward(self, state: ToolUseState) -> tuple[float, dict]:
        if not turns.has_backend(state.traj):
            ok = state.finished and state.off_script is None
            reason = ("the agent followed the demonstration to its end" if ok else state.off_script
                      or "episode ended before the demonstration's last turn")
            return float(ok), {"success": ok, "reason": reason, "failure_kind": None}
        ok = state.finished and all(c["ok"] for c in state.turn_checks)
        reason = ("all turns passed" if ok else "episode ended before the last user turn" if not state.finished
                  else next(f"turn {c['turn']}: {c['reason']}" for c in state.turn_checks if not c["ok"]))
        return float(ok), {"turn_checks": list(state.turn_checks), "success": ok, "reason": reason,
                           "failure_kind": None}

    # ------------------------------------------------------------------ observation: tools available now
    def tools_at(self, state: ToolUseState | None) -> list[dict]:
        assert self._traj is not None, "tools_at needs a reset env"
        if state is None:
            return list(self._traj.tools)
        return bfcl.tools_at(self._traj, state.bfcl_turn)

    def close(self):
        super().close()
        self.worker.close()
