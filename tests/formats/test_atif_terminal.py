"""Harbor ATIF agent runs paired with their task folder -> terminal trajectories: a Terminus run
(tmux keystrokes, one screen per step, a wait, mark_task_complete) and an OpenHands run (execute_bash,
results linked by call id) on two shipped Harbor tasks; converted, loaded by PivotTerminal-v0 and
self-scored at every turn (local backend; docker too), round-tripped through NeMo-Gym rows, through
the CLI; steps that do not map and runs that do not solve the task are clear errors."""

from __future__ import annotations

import json
import shutil

import pytest

from pivot_algo import cli
from pivot_envs.domains.terminal.harbor import (
    BUILTIN_TASKS_DIR,
    HarborTaskError,
    load_task,
)
from pivot_envs.domains.terminal.harbor.agent_runs import (
    RunRefusedError,
    convert_agent_runs,
    local_recipe,
)
from pivot_envs.formats.atif import AtifStepError
from pivot_envs.trajectory import load_trajectories, tool_calls_of

from .conftest import calls_back_and_forth, self_scores

RUNS = [("atif_terminus_log_summary.json", "log-level-summary"), ("atif_openhands_median.json", "fix-python-median")]


def _convert(fixtures, backend):
    return load_trajectories([t for run, task in RUNS
                              for t in convert_agent_runs(fixtures / run, BUILTIN_TASKS_DIR / task, backend)])


def _commands(m):
    return [c.arguments["command"] for c in tool_calls_of(m)]


def test_runs_become_terminal_trajectories_of_their_task(fixtures, local_backend):
    terminus, openhands = _convert(fixtures, local_backend)
    assert terminus.id == "atif-terminus-log-summary-1" and terminus.domain == "terminal"
    assert [t["function"]["name"] for t in terminus.tools] == ["bash"]
    # the agent's own prompt is replaced by the terminal prompt and the task's instruction
    assert terminus.messages[1]["content"] == load_task(BUILTIN_TASKS_DIR / "log-level-summary").instruction
    assert [m["role"] for m in terminus.messages[2:]] == ["assistant", "tool", "assistant", "tool", "assistant",
                                                          "tool", "assistant"]
    refs = [terminus.reference(k) for k in range(terminus.num_turns)]
    assert _commands(refs[0]) == ["head -n 3 logs/app.log"]  # the Enter is the end of the command line
    # two keystrokes read back as one screen: one bash call running both, in order
    both = ("awk '{print $2}' logs/app.log | sort | uniq -c | sort -rn | awk '{print $2, $1}' > summary.txt\n"
            "grep ' ERROR ' logs/app.log > errors.log")
    assert _commands(refs[1]) == [both]
    # the wait is no turn; its screen follows the output it waited for
    assert terminus.messages[5]["content"].endswith("errors.log\nroot@box:/app# \nroot@box:/app# ")
    assert refs[3] == {"role": "assistant", "content": terminus.messages[-1]["content"]}  # mark_task_complete
    assert "INFO 36" in terminus.messages[-2]["content"]  # outputs are what the agent read
    assert terminus.task["files"] == {"/app/logs/app.log": (BUILTIN_TASKS_DIR / "log-level-summary" / "environment"
                                                            / "app.log").read_text()}
    assert terminus.task["source"]["agent_run"]["agent"]["name"] == "terminus-2"
    assert terminus.task["recorded_with"] == {"backend": "local", "image": "host"} and "PIVOT_TESTS_B64" in terminus.task["test"]
    # results linked by call id: one bash call per execute_bash call, each with its own output
    assert openhands.num_turns == 3 and len(_commands(openhands.reference(1))) == 2
    assert [m["content"] for m in openhands.messages if m["role"] == "tool"][1:] == ["", "2.5\n3.0"]


def test_self_scored_at_every_turn_on_local(fixtures, local_backend):
    scores = self_scores(_convert(fixtures, local_backend), env_id="PivotTerminal-v0", sandbox=local_backend)
    assert len(scores) == 7 and all(r == 1.0 for _, _, r, _ in scores), scores


@pytest.mark.docker
def test_converted_and_self_scored_at_every_turn_on_docker(fixtures, docker_backend):
    trajs = _convert(fixtures, docker_backend)
    assert all(t.task["image"].startswith("pivotrl/task-") for t in trajs)
    scores = self_scores(trajs, env_id="PivotTerminal-v0", sandbox=docker_backend)
    assert len(scores) == 7 and all(r == 1.0 for _, _, r, _ in scores), scores


def test_round_trip_through_nemo_gym_rows(fixtures, local_backend):
    back, before = calls_back_and_forth(_convert(fixtures, local_backend))
    assert back == before and sum(len(c) for c in before) == 6


def test_through_the_cli_convert_then_validate(fixtures, tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    run, task = RUNS[0]
    rc = cli.main(["data", "convert", "--from", "atif", str(fixtures / run), "--task-dir", str(BUILTIN_TASKS_DIR / task),
                   "--backend", "local", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "1 terminal trajectories (4 turns)" in text, text
    rc = cli.main(["data", "validate", str(out), "--sandbox", "local", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and "all 4 turns" in text, text


def _run(*agent_steps):
    return {"session_id": "bad", "steps": [{"source": "user", "message": "do it"}, *agent_steps]}


@pytest.mark.parametrize("step, field, why", [
    ({"source": "agent", "message": "", "tool_calls": [{"tool_call_id": "1", "function_name": "str_replace_editor",
      "arguments": {"command": "create", "path": "/app/x"}}]}, "steps[1].tool_calls[0].function_name", "not a shell tool"),
    ({"source": "agent", "message": "", "tool_calls": [{"tool_call_id": "1", "function_name": "bash_command",
      "arguments": {"keystrokes": "C-c", "duration": 1}}]}, "steps[1].tool_calls[0].arguments.keystrokes", "interactive key"),
    ({"source": "agent", "message": "", "tool_calls": [{"tool_call_id": "1", "function_name": "bash_command",
      "arguments": {"keystrokes": "vim notes.txt", "duration": 1}}]}, "steps[1].tool_calls[0].arguments.keystrokes",
     "do not end with Enter"),
    ({"source": "agent", "message": "", "tool_calls": [{"tool_call_id": "1", "function_name": "execute_bash",
      "arguments": {"timeout": 3}}]}, "steps[1].tool_calls[0].arguments", "none of the arguments"),
])
def test_steps_that_do_not_map_name_the_file_step_and_field(tmp_path, step, field, why):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_run(step), indent=1))
    with pytest.raises(AtifStepError, match=why) as e:
        convert_agent_runs(path, BUILTIN_TASKS_DIR / "log-level-summary", "local")
    assert e.value.step == 1 and e.value.field == field and e.value.source == str(path) and e.value.line == 1
    assert str(path) in str(e.value) and field in str(e.value)


def test_a_run_that_does_not_solve_the_task_is_refused_with_the_test_output(tmp_path, local_backend, capsys):
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(_run({"source": "agent", "message": "", "tool_calls": [
        {"tool_call_id": "1", "function_name": "bash", "arguments": {"command": "echo 'INFO 1' > summary.txt"}}]})) + "\n")
    with pytest.raises(RunRefusedError, match=r"run\.jsonl, line 1: the run does not solve log-level-summary") as e:
        convert_agent_runs(path, BUILTIN_TASKS_DIR / "log-level-summary", local_backend)
    assert e.value.kind == "run_fails" and "Test output" in str(e.value)
    rc = cli.main(["data", "convert", "--from", "atif", str(path), "--task-dir", str(BUILTIN_TASKS_DIR / "log-level-summary"),
                   "--backend", "local", "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("pivotrl data convert: data error: ") and "does not solve" in err


def test_local_recipe_reads_the_dockerfile_and_refuses_what_the_host_cannot_do(tmp_path):
    recipe = local_recipe(load_task(BUILTIN_TASKS_DIR / "archive-old-logs"))
    assert recipe["workdir"] == "/app" and not recipe["files"] and "/app/var/log/$svc" in recipe["setup"]
    task = tmp_path / "t"
    shutil.copytree(BUILTIN_TASKS_DIR / "log-level-summary", task)
    dockerfile = task / "environment" / "Dockerfile"
    for body, why in [("FROM a AS b\nFROM c\n", "multi-stage"), ("FROM a\nCOPY --from=b /x /app/x\n", "flags"),
                      ("FROM a\nCOPY app.log /etc/app.log\n", "outside the working directory"),
                      ("FROM a\nUSER nobody\n", "USER is not reproduced"), ("FROM a\nCOPY nope.txt /app/\n", "build context")]:
        dockerfile.write_text(body)
        with pytest.raises(HarborTaskError, match=why):
            local_recipe(load_task(task))
    dockerfile.write_text("FROM ubuntu:24.04\nENV A=1 B=\"two words\"\nWORKDIR /app\nCOPY app.log logs/\n"
                          "RUN mkdir -p out \\\n && echo hi > out/x\n")
    recipe = local_recipe(load_task(task))
    assert recipe["env"] == {"A": "1", "B": "two words"} and list(recipe["files"]) == ["/app/logs/app.log"]
    assert "mkdir -p out \n && echo hi > out/x" in recipe["setup"]
