"""Harbor / Terminal-Bench adapter: parsing (with malformed input), the solve.sh splitter, the
test-script wrapper's reward-file rule, and end-to-end conversion of the shipped example tasks."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from pivot_envs.domains.terminal import harbor
from pivot_envs.domains.terminal.harbor import HarborTaskError, split_solution
from pivot_envs.trajectory import validate_record

TASKS = sorted(p.name for p in harbor.BUILTIN_TASKS_DIR.iterdir() if p.is_dir())


# ----------------------------------------------------------------------------- splitter


def test_splitter_keeps_multiline_constructs_whole():
    script = textwrap.dedent("""\
        #!/bin/bash
        # a comment

        cat > a.py <<'EOF'
        if x:
            done = "fi )"
        EOF
        for f in *.txt; do
          echo "$(basename "$f")"
        done
        if [ -f a ]; then echo y
        else echo n; fi
        echo a \\
          b
        ls | grep x &&
          echo ok
        case "$x" in
          a) echo A ;;
          *) echo other ;;
        esac
        { echo 1; echo 2; } > out.txt
        echo "unbalanced ) and # inside quotes" # trailing ( comment
        cat <<-EOT
        \tindented
        \tEOT
        echo last
        """)
    steps = split_solution(script).steps
    assert [s.split()[0] for s in steps] == ["cat", "for", "if", "echo", "ls", "case", "{", "echo", "cat", "echo"]
    assert steps[0].endswith("EOF") and 'done = "fi )"' in steps[0]
    assert steps[2].endswith("fi") and steps[3] == "echo a \\\n  b" and steps[4].endswith("echo ok")
    assert steps[-1] == "echo last"


def test_splitter_set_e_and_context_carry():
    script = textwrap.dedent("""\
        set -euo pipefail
        cd /app/repo
        export MODE=fast
        helper() {
          echo "help $1"
        }
        fix=$(git log --format=%H | head -n 1)
        git show "$fix"
        helper me
        cd /app && ls
        """)
    parsed = split_solution(script)
    assert parsed.stop_on_error
    prefix = 'cd /app/repo\nexport MODE=fast\nfix=$(git log --format=%H | head -n 1)\n'
    assert parsed.steps[0] == prefix + 'git show "$fix"'
    assert parsed.steps[1].startswith(prefix + "helper() {") and parsed.steps[1].endswith("helper me")
    assert parsed.steps[2] == prefix + "cd /app && ls"  # a cd with a command after it is a real step
    assert not split_solution("echo a\nset -x\necho b\n").stop_on_error
    assert split_solution("set -o errexit\necho hi\n").stop_on_error
    # functions reach only the steps that call them, transitively
    assert split_solution("a() {\n  echo a\n}\nb() { a; }\nc() { echo c; }\nb\necho x\n").steps == [
        "a() {\n  echo a\n}\nb() { a; }\nb", "echo x"]


@pytest.mark.parametrize("bad", ["if true; then\n  echo x\n", "echo 'unclosed\n", "cat <<EOF\nno end\n", "echo a \\\n"])
def test_splitter_rejects_unfinished_scripts(bad):
    with pytest.raises(HarborTaskError, match="unfinished|never closed"):
        split_solution(bad)


# ----------------------------------------------------------------------------- parsing


def test_toml_and_yaml_errors_are_clear():
    with pytest.raises(HarborTaskError, match=r"task.toml: invalid TOML.*line 2"):
        harbor.parse_task_toml("[verifier]\ntimeout_sec = = 3\n")
    with pytest.raises(HarborTaskError, match=r"\[agent\] must be a table"):
        harbor.parse_task_toml('agent = "fast"\n')
    with pytest.raises(HarborTaskError, match=r"invalid YAML at line 3, column \d+"):
        harbor.parse_task_yaml("instruction: |\nbad: [unclosed\n  - x: y: z\n")
    with pytest.raises(HarborTaskError, match="'instruction' is missing"):
        harbor.parse_task_yaml("difficulty: easy\n")
    with pytest.raises(HarborTaskError, match="expected a mapping"):
        harbor.parse_task_yaml("- just\n- a list\n")
    assert harbor.parse_memory_mb("2G") == 2048 and harbor.parse_memory_mb("512M") == 512
    assert harbor.parse_memory_mb("1.5GiB") == 1536 and harbor.parse_memory_mb(4096) == 4096
    for bad in ("lots", "2X", True, "1K"):
        with pytest.raises(HarborTaskError, match="memory"):
            harbor.parse_memory_mb(bad)


def _copy_task(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(harbor.BUILTIN_TASKS_DIR / name, dst)
    return dst


def test_load_task_reports_missing_and_malformed_files(tmp_path):
    task = _copy_task(tmp_path, "log-level-summary")
    (task / "task.toml").write_text('[agent]\ntimeout_sec = "soon"\n')
    with pytest.raises(HarborTaskError, match=r"\[agent\] timeout_sec must be a positive number"):
        harbor.load_task(task)
    (task / "task.toml").write_text("[environment]\nmemory = '2G'\ncpus = 2\n")
    assert harbor.load_task(task).limits.memory_mb == 2048 and harbor.load_task(task).limits.cpus == 2
    (task / "tests" / "test.sh").unlink()
    with pytest.raises(HarborTaskError, match="missing tests/test.sh"):
        harbor.load_task(task)
    (task / "solution" / "helper.py").write_text("x = 1\n")
    with pytest.raises(HarborTaskError, match="not a directory|neither task.toml"):
        harbor.load_task(tmp_path / "nope")
    tb = _copy_task(tmp_path, "csv-sales-report")
    (tb / "task.yaml").write_text("instruction: [oops\n")
    with pytest.raises(HarborTaskError, match="task.yaml: invalid YAML"):
        harbor.load_task(tb)


def test_shipped_tasks_cover_both_layouts_and_five_categories():
    loaded = [harbor.load_task(harbor.BUILTIN_TASKS_DIR / n) for n in TASKS]
    assert len(loaded) >= 5
    assert {t.layout for t in loaded} == {"harbor", "terminal-bench"}
    cats = {str(t.metadata.get("category")) for t in loaded}
    assert len(cats) >= 5, cats
    for t in loaded:
        assert t.solution and split_solution(t.solution).steps
        dockerfile = (t.dockerfile_dir / "Dockerfile").read_text()
        assert any(base in dockerfile for base in ("ubuntu:", "python:", "debian:")), t.name  # exercises the fallback
        d = harbor.to_task_dict(t, "img")
        assert d["setup"] == "" and d["image"] == "img" and "PIVOT_TESTS_B64" in d["test"]


# ----------------------------------------------------------------------------- docker


def _reward_task(tmp_path: Path, body: str) -> harbor.HarborTask:
    root = tmp_path / "reward-task"
    (root / "environment").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "environment" / "Dockerfile").write_text("FROM pivotrl/sandbox-base:latest\nWORKDIR /app\n")
    (root / "instruction.md").write_text("nothing\n")
    (root / "task.toml").write_text("[verifier]\ntimeout_sec = 30\n")
    (root / "tests" / "test.sh").write_text(body)
    return harbor.load_task(root)


@pytest.mark.docker
@pytest.mark.parametrize("body, passes", [
    ("echo 1 > /logs/verifier/reward.txt; exit 1\n", True),    # the reward file wins over the exit code
    ("echo 0 > /logs/verifier/reward.txt; exit 0\n", False),
    ("echo 0.5 > /logs/verifier/reward.txt\n", False),
    ("test \"$PWD\" = /app && test -f /tests/test.sh\n", True),  # no reward file: exit status decides
    ("exit 3\n", False),
])
def test_reward_file_rule(docker_backend, tmp_path, body, passes):
    script = harbor.test_script(_reward_task(tmp_path, body))
    with docker_backend.create(None) as sb:
        assert sb.exec(script, timeout=30).ok is passes


@pytest.mark.docker
@pytest.mark.parametrize("name", TASKS)
def test_convert_shipped_task(docker_backend, name):
    converted = harbor.convert_task(harbor.BUILTIN_TASKS_DIR / name, docker_backend)
    assert converted.initial_passed is False, "the tests must fail before the solution ran"
    traj = validate_record(json.loads(json.dumps(converted.trajectory)))
    assert traj.task["image"].startswith("pivotrl/task-") and traj.task["recorded_with"]["backend"] == "docker"
    steps = split_solution(harbor.load_task(harbor.BUILTIN_TASKS_DIR / name).solution).steps
    assert traj.num_turns == len(steps) + 1 and len(converted.step_exit_codes) == len(steps)
    # The converted task is self-contained: a fresh sandbox of its image, the recorded commands, its test.
    with docker_backend.create(traj.task["image"], workdir=traj.task["workdir"]) as sb:
        assert not sb.exec(traj.task["test"], timeout=60).ok
        for k in range(traj.num_turns - 1):
            cmd = json.loads(traj.reference(k)["tool_calls"][0]["function"]["arguments"])["command"]
            sb.exec(cmd, timeout=60)
        assert sb.exec(traj.task["test"], timeout=60).ok
