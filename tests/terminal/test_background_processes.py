"""Faithful state: a demonstration that starts a server in the background at turn 1 (`setsid python3
server.py &`) and whose test talks to it. A snapshot holds files, not processes: restored from one,
the final state has no server and the demonstration scored 0 against itself there (the case below
shows it still fails that way). States after turn 1 are now restored by replaying the demonstration
live (info["restore"] = "replay") on docker, and refused with the reason on the local backend, whose
processes never outlive their command. The process check itself (`pivot_envs.processes`) must leave
every command's output and exit status as they were."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs import sandboxed_env
from pivot_envs.base_env import pivot_env
from pivot_envs.bash_tool import BASH_TOOL
from pivot_envs.domains.terminal.tasks.recorder import record_commands
from pivot_envs.processes import split_watched, watched
from pivot_envs.sandbox import SandboxLimits
from pivot_envs.sandboxed_env import UnfaithfulStateError

SERVER = '''import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"pong\\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8765), H).serve_forever()
'''
PROBE = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8765', timeout=5).read().decode().strip())"
# the server may still be starting when the test runs right after a replay: retry for up to 3 s (bash's
# /dev/tcp: a refused connection costs nothing, where a python probe per try costs a start-up)
TEST = ("for i in $(seq 30); do (exec 3<>/dev/tcp/127.0.0.1/8765 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 "
        "&& grep -qx pong <&3) 2>/dev/null && exit 0; sleep 0.1; done; exit 1")
COMMANDS = [f"cat > server.py <<'EOF'\n{SERVER}EOF", "setsid python3 server.py >/dev/null 2>&1 &",
            f"sleep 1; python3 -c \"{PROBE}\""]


def _trajectory(background_processes=None) -> dict:
    msgs = [{"role": "user", "content": "Serve pong on port 8765 in the background."}]
    for k, (cmd, out) in enumerate(zip(COMMANDS, ["(no output)", "(no output)", "pong"])):
        msgs += [{"role": "assistant", "content": "", "tool_calls": [{"id": f"c{k}", "type": "function", "function": {
            "name": "bash", "arguments": json.dumps({"command": cmd})}}]},
                 {"role": "tool", "tool_call_id": f"c{k}", "name": "bash", "content": out}]
    msgs.append({"role": "assistant", "content": "The server answers pong on port 8765."})
    task = {"test": TEST, **({"background_processes": background_processes} if background_processes is not None else {})}
    return {"id": "bg-server", "domain": "terminal", "task": task, "tools": [BASH_TOOL], "messages": msgs}


def _self_scores(traj: dict, backend) -> list[tuple[int, float | None, str | None]]:
    """(turn, reward, info["restore"]) of the demonstration judged against itself; reward None where
    the reset was refused (UnfaithfulStateError)."""
    env = pivot_env(gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=backend, disable_env_checker=True))
    out = []
    try:
        t = env.trajectories[0]
        for k in range(t.num_turns):
            try:
                _, info = env.reset(options={"trajectory": 0, "turn": k})
            except UnfaithfulStateError as e:
                assert "turn 1 (" in str(e) and "server.py" in str(e) and "sandbox='docker'" in str(e), str(e)
                out.append((k, None, None))
                continue
            out.append((k, env.judge_actions([t.reference(k)])[0].reward, info["restore"]))
            if k == t.num_turns - 1:
                # the failing case: the same state served from its file-system snapshot has no server
                state = env._state
                assert env.run_task_test(dataclasses.replace(state, restore="snapshot")) is False
                assert env.run_task_test(state) is True
    finally:
        env.close()
    return out


def test_watched_commands_keep_their_output_and_say_what_they_left_running(local_backend):
    with local_backend.create(None) as sb:
        for cmd in ["echo out; echo err >&2; exit 3", "printf 'no newline'", "echo $$ $0 > /dev/null; pwd", "true"]:
            res, left = split_watched(sb.exec(watched(cmd), timeout=30))
            plain = sb.exec(cmd, timeout=30)
            assert (res.exit_code, res.stdout, res.stderr) == (plain.exit_code, plain.stdout, plain.stderr)
            assert left == ()
        _, left = split_watched(sb.exec(watched("setsid sleep 30 >/dev/null 2>&1 &"), timeout=30))
        assert left is not None and any("sleep 30" in p for p in left), left
        _, left = split_watched(sb.exec(watched("sleep 5"), timeout=1))
        assert left is None  # timed out: the listing never came


def test_a_process_caught_inside_exec_is_still_named_by_its_command(local_backend):
    # the listing runs right after the command returns, when `setsid` may be replacing itself with the
    # server (its cmdline is empty for that moment): before the retry ~1 run in 10 here, and ~1 in 60 on
    # docker (a CI failure), listed the process as "[setsid]"
    with local_backend.create(None) as sb:
        for _ in range(100):
            _, left = split_watched(sb.exec(watched("setsid sleep 30 >/dev/null 2>&1 &"), timeout=30))
            assert left and all("sleep 30" in p for p in left), left


def test_recording_on_local_names_the_step_that_left_a_server_running(local_backend):
    rec = record_commands(local_backend, None, workdir="/app", limits=SandboxLimits(), commands=COMMANDS, test=TEST)
    assert not rec.final_test.ok  # the server died with its command: the demonstration cannot pass here
    assert [e["turn"] for e in rec.background_processes()] == [1]
    note = rec.process_note()
    assert "step 1 (" in note and "server.py" in note and "only be recorded on docker" in note, note


def test_local_backend_refuses_states_after_the_server_turn(local_backend):
    # with or without the recorded answer: turns 0 and 1 are ordinary, 2 and 3 need the server
    for traj in (_trajectory(), _trajectory([{"turn": 1, "processes": ["python3 server.py"]}])):
        scores = _self_scores(traj, local_backend)
        assert [(k, r) for k, r, _ in scores] == [(0, 1.0), (1, 1.0), (2, None), (3, None)], scores
    # states served from the cache with nothing seen while they were built: checked by a watched replay
    sandboxed_env._LEFT_RUNNING.clear()
    scores = _self_scores(_trajectory(), local_backend)
    assert [(k, r) for k, r, _ in scores] == [(0, 1.0), (1, 1.0), (2, None), (3, None)], scores


@pytest.mark.docker
def test_background_server_state_is_replayed_live_and_self_scores_1_on_docker(docker_backend):
    rec = record_commands(docker_backend, None, workdir="/app", limits=SandboxLimits(), commands=COMMANDS, test=TEST)
    assert rec.final_test.ok and [e["turn"] for e in rec.background_processes()] == [1]
    assert any("python3 server.py" in p for p in rec.background_processes()[0]["processes"])
    # detected while the states are built (no record of it), and taken from the record
    for traj in (_trajectory(), _trajectory(rec.background_processes())):
        scores = _self_scores(traj, docker_backend)
        assert scores == [(0, 1.0, "snapshot"), (1, 1.0, "snapshot"), (2, 1.0, "replay"), (3, 1.0, "replay")], scores
    # a command judged at turn 2 runs, as do the two reference runs: `echo pong` matches the demonstration's
    # probe only where the server answers it (from a snapshot, the probe fails and `echo pong` scores 0)
    env = pivot_env(gym.make("PivotTerminal-v0", trajectories=[_trajectory()], sandbox=docker_backend,
                             disable_env_checker=True))
    try:
        env.reset(options={"trajectory": 0, "turn": 2})
        same = {"role": "assistant", "content": "", "tool_calls": [{"id": "x", "type": "function", "function": {
            "name": "bash", "arguments": json.dumps({"command": "echo pong"})}}]}
        verdict = env.judge_actions([same])[0]
        assert verdict.reward == 1.0, verdict.reason
    finally:
        env.close()
