"""Harbor adapter on shapes met in public task folders (issue 20): install lines with redirections,
a solution that apt-installs what it needs, `allow_internet = true` tasks that pass offline, hour-long
timeouts, an image that does not build, a refusal whose reason is far from the end of the output, and
a Terminal-Bench `uv venv -p 3.12` + `uv pip install` of an sdist-only package.
The folders are in `harbor_public_shapes/` (task data, not tests of this project)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pivot_envs.domains.terminal import harbor
from pivot_envs.domains.terminal.harbor.offline import (
    plan_test_dependencies,
    shell_words,
)

SHAPES = Path(__file__).resolve().parent / "harbor_public_shapes"


def _plan(text: str):
    return plan_test_dependencies({"test.sh": text.encode()}, ["test.sh"])


# ----------------------------------------------------------------------------- no Docker


@pytest.mark.parametrize("text, words", [
    ("pytest==9.0.3 2>/dev/null", ["pytest==9.0.3"]),                      # the redirect is no package
    ("-q pytest >/dev/null 2>&1", ["-q", "pytest"]),
    ("-q 'requests>=2' \"rich < 14\" # a comment", ["-q", "requests>=2", "rich < 14"]),  # quotes kept whole
    ("a>=1 b", ["a", "b"]),                                                # unquoted: bash redirects to `=1`
    ("x \\\n  y && pip install z", ["x", "y"]),                           # continuation; stops at &&
    ("pkg &>>log.txt other", ["pkg", "other"]),
])
def test_install_words_are_read_as_the_shell_reads_them(text, words):
    assert shell_words(text) == words


def test_a_redirected_pip_install_plans_only_the_package():
    """`pip install pytest==9.0.3 2>/dev/null` in a public test runner made the build ask PyPI for
    "2>/dev/null"."""
    plan = _plan("pip install pytest==8.3.5 2>/dev/null\npip install -q \"pytest-timeout>=2\" >/dev/null 2>&1\n"
                 "apt-get install -y curl > /dev/null # quiet\n")
    assert plan.python_requirements == ("pytest==8.3.5", "pytest-timeout>=2")
    assert plan.preinstalled == plan.python_requirements and plan.apt_packages == ("curl",)


def test_apt_packages_the_solution_installs_are_installed_at_build():
    """A solution starting `apt-get update && apt-get install -y jq` was refused (no network at run
    time); its packages now go into the image like the tests' own."""
    plan = _plan("true\n").with_solution("set -e\napt-get update && DEBIAN_FRONTEND=noninteractive apt-get install "
                                          "-y --no-install-recommends jq 2>/dev/null\njq . x.json\n")
    assert plan.apt_packages == ("jq",) and plan.command_env is None
    assert any("apt-get install -y --no-install-recommends jq" in line for line in plan.dockerfile_lines())
    assert any("jq" in note and "solution" in note for note in plan.notes)


def test_sdists_in_the_wheelhouse_are_built_into_wheels_at_image_build():
    """`uv venv -p 3.12 && uv pip install docopt==0.6.2` (an sdist-only release) failed offline: uv had
    to build it and setuptools was not in the wheelhouse ("Failed to download and build")."""
    lines = _plan("uv pip install pytest==8.3.5 docopt==0.6.2\n").dockerfile_lines()
    download = next(i for i, line in enumerate(lines) if " download " in line)
    assert " wheel " in lines[download + 1] and "*.tar.gz" in lines[download + 1]


def test_hour_long_timeouts_are_clamped_to_the_backend_ceiling_and_recorded():
    """[verifier] timeout_sec = 3600 failed the conversion with docker's raw `exec timeout must be in
    (0, 3540] s`; now the test's limit is the ceiling and the record says what was declared."""
    task = harbor.load_task(SHAPES / "pip-redirect-hour-timeouts")
    assert task.agent_timeout_s == 3600.0 and task.test_timeout_s == 3600.0
    d = harbor.to_task_dict(task, "img", max_exec_timeout_s=3540.0)
    assert d["test_timeout_s"] == 3540.0 and d["agent_timeout_s"] == 3600.0
    assert d["timeouts_clamped"] == {"test_timeout_s": {"declared": 3600.0, "used": 3540.0}}
    assert "timeouts_clamped" not in harbor.to_task_dict(task, "img")  # no ceiling, nothing clamped


def test_docker_build_removes_intermediate_containers_of_a_failed_step(monkeypatch, tmp_path):
    """The classic builder keeps a failed step's container unless asked (`--force-rm`)."""
    import pivot_envs.images.build as builder

    seen: list[list[str]] = []
    monkeypatch.setattr(builder, "_run", lambda cmd, **kw: seen.append(cmd))
    builder.docker_build(tmp_path, "t:1")
    assert "--force-rm" in seen[0]


# ----------------------------------------------------------------------------- in Docker


def _containers() -> set[str]:
    """Stopped containers that no sandbox backend made (no `pivotrl` label): what a failed `docker
    build` leaves behind. Sandboxes of tests running beside this one are not counted."""
    out = subprocess.run(["docker", "ps", "-a", "--no-trunc", "--filter", "status=exited", "--filter", "status=created",
                          "--format", "{{.ID}} {{.Label \"pivotrl\"}}"],
                         capture_output=True, text=True, check=True, timeout=60)
    return {line.split()[0] for line in out.stdout.splitlines() if len(line.split()) == 1}


@pytest.mark.docker
def test_refusals_keep_their_whole_reason_and_failed_builds_leave_no_container(docker_backend, tmp_path):
    """The folders that need no registry at build time (FROM the local base): the status file keeps
    the line that says why, 400 lines before the end of the output, and the build log; the failed
    build leaves no `Exited` container; an allow_internet task that passes offline is kept, flagged."""
    import shutil

    names = ("image-build-fails", "internet-declared-offline-ok", "solution-fails-long-log")
    for name in names:
        shutil.copytree(SHAPES / name, tmp_path / "src" / name)
    before = _containers()
    out = tmp_path / "out.jsonl"
    report = harbor.convert_folder(tmp_path / "src", docker_backend, out=out)
    assert [(o.name, o.status, o.kind, o.flags) for o in report.outcomes] == [
        ("image-build-fails", "refused", "image_build_failed", ()),
        ("internet-declared-offline-ok", "converted", "", ("declares_internet",)),
        ("solution-fails-long-log", "refused", "solution_fails", ())], report.table()
    status = {r["name"]: r for r in map(json.loads, harbor.folder.status_path(out).read_text().splitlines())}
    assert "Failed to download and unpack toolchain-1.2.3" in status["solution-fails-long-log"]["reason"]
    assert "the vendored archive checksum does not match" in status["image-build-fails"]["reason"]
    assert _containers() <= before, "a failed build left containers behind"


@pytest.mark.slow  # the image builds reach PyPI and Debian (apt jq, pytest, docopt), like harbor_wild's
@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_public_shapes_convert(docker_backend, tmp_path):
    """Each folder converts (or is refused) as issue 20 asks; the refusals keep their whole reason in
    the status file, the failed image build leaves no container behind, and every converted record
    scores its demonstration 1 at every turn and doing nothing 0."""
    before = _containers()
    out = tmp_path / "shapes.jsonl"
    report = harbor.convert_folder(SHAPES, docker_backend, out=out)
    print("\n" + report.table())
    got = {o.name: (o.status, o.kind) for o in report.outcomes}
    assert got == {
        "apt-solution-jq": ("converted", ""),
        "image-build-fails": ("refused", "image_build_failed"),
        "internet-declared-offline-ok": ("converted", ""),
        "pip-redirect-hour-timeouts": ("converted", ""),
        "solution-fails-long-log": ("refused", "solution_fails"),
        "uv-venv-sdist-only": ("converted", ""),
    }, report.table()
    trajs = {t["id"]: t for t in report.trajectories}
    assert trajs["harbor-internet-declared-offline-ok"]["task"]["flags"] == ["declares_internet"]
    assert [o.flags for o in report.outcomes if o.name == "internet-declared-offline-ok"] == [("declares_internet",)]
    timed = trajs["harbor-pip-redirect-hour-timeouts"]["task"]
    assert timed["test_timeout_s"] == docker_backend.max_exec_timeout_s
    assert timed["timeouts_clamped"]["test_timeout_s"]["declared"] == 3600.0
    jq = trajs["harbor-apt-solution-jq"]
    assert jq["messages"][2]["tool_calls"][0]["function"]["arguments"].count("apt-get install -y jq")  # kept as written
    status = {r["name"]: r for r in map(json.loads, harbor.folder.status_path(out).read_text().splitlines())}
    assert "Failed to download and unpack toolchain-1.2.3" in status["solution-fails-long-log"]["reason"]
    assert "cleaning up partial file 400 of 400" in status["solution-fails-long-log"]["reason"]
    assert "the vendored archive checksum does not match" in status["image-build-fails"]["reason"]
    assert _containers() <= before, "a failed build left containers behind"
    # The converted records work in the env: the demonstration equals itself at every turn (the apt
    # step included, replayed offline), and doing nothing earns 0.
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.trajectory import load_trajectories

    loaded = load_trajectories(report.trajectories)
    env = gym.make("PivotTerminal-v0", trajectories=loaded, sandbox=docker_backend)
    episode = gym.make("PivotTerminal-v0", trajectories=loaded, sandbox=docker_backend, mode="episode")
    try:
        for traj in loaded:
            for k in range(traj.num_turns):
                env.reset(options={"trajectory": traj.id, "turn": k})
                (verdict,) = env.unwrapped.judge_actions([traj.reference(k)])
                assert verdict.reward == 1.0, (traj.id, k, verdict.reason)
            episode.reset(options={"trajectory": traj.id, "turn": 0})
            assert episode.step({"role": "assistant", "content": "Done."})[1] == 0.0, traj.id
    finally:
        env.close()
        episode.close()


@pytest.mark.docker
def test_internet_task_failing_offline_is_refused_as_declares_internet(docker_backend):
    """The offline default builds and runs it; a solution that needs the network is then refused with
    the kind that says why (and `internet_tasks="refuse"` still refuses before any build)."""
    wild = Path(__file__).resolve().parent / "harbor_wild" / "fetch-release-internet"
    with pytest.raises(harbor.TaskRefusedError, match="does not pass offline") as info:
        harbor.convert_task(wild, docker_backend)
    assert info.value.kind == "declares_internet"
    with pytest.raises(harbor.TaskRefusedError, match="internet_tasks='refuse'") as info:
        harbor.convert_task(wild, docker_backend, internet_tasks="refuse")
    assert info.value.kind == "declares_internet"
