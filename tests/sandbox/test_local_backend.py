"""Behaviour specific to the `local` backend (bubblewrap + overlayfs); the shared contract is in
test_contract.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pivot_envs.errors import SandboxError, SandboxUnavailableError
from pivot_envs.sandbox import SandboxLimits, make_backend

pytestmark = pytest.mark.local


@pytest.fixture
def fresh_backend(request):
    """A private backend (so that tests can inspect and close it), skipped like conftest's."""
    from tests.conftest import require

    try:
        be = make_backend("local", **getattr(request, "param", {}))
    except SandboxUnavailableError as e:
        require(False, f"local sandbox backend unavailable: {e}")
    yield be
    be.close()


def _layer_dirs(be) -> set[str]:
    """Layer directories on disk: squashed ones under layers/, the others on their sandbox's volume."""
    found = {f"L/{n}" for n in os.listdir(os.path.join(be.root, "layers")) if n != "empty"}
    vroot = os.path.join(be.root, "volumes")
    for vol in os.listdir(vroot):
        layers = os.path.join(vroot, vol, "layers")
        if os.path.isdir(layers):
            found |= {f"V/{vol}/{n}" for n in os.listdir(layers)}
    return found


# ---------------------------------------------------------------------------------------- arguments


def test_docker_images_are_rejected_with_a_hint(local_backend):
    with pytest.raises(SandboxUnavailableError, match="cannot run the image 'debian:bookworm'.*docker"):
        local_backend.create("debian:bookworm")
    for image in (None, "host"):
        with local_backend.create(image) as sb:
            assert sb.exec("echo ok").stdout == "ok\n"


def test_workdir_is_validated_and_used(local_backend):
    for bad in ("relative/dir", "/", "/usr/src/app", "/proc/x", "/app:x"):
        with pytest.raises(ValueError, match="workdir"):
            local_backend.create(workdir=bad)
    with local_backend.create(workdir="/workspace/proj") as sb:
        assert sb.exec("pwd; touch f; ls /workspace/proj").stdout == "/workspace/proj\nf\n"
        snap = sb.snapshot()
    with local_backend.fork(snap) as f:
        assert f.workdir == "/workspace/proj" and f.exec("ls").stdout == "f\n"
    local_backend.release(snap)


def test_paths_that_escape_the_stored_dirs_are_rejected(local_backend):
    from pivot_envs.sandbox.local import SandboxPathError

    with local_backend.create() as sb:
        sb.exec("ln -s /etc/passwd host_link && ln -s ../../etc sneaky_dir && mkdir -p d && "
                "echo inside > d/t && ln -s /app/d/t abs_inside && ln -s d/t rel_inside")
        for path in ("../etc/passwd", "/etc/passwd", "host_link", "sneaky_dir/hostname", "/app/../usr/bin/env"):
            with pytest.raises(SandboxPathError, match="outside"):
                sb.read_file(path)
        with pytest.raises(SandboxPathError):
            sb.write_file("../../etc/evil", b"x")
        with pytest.raises(SandboxPathError):
            sb.write_file("host_link", b"x")
        with pytest.raises(SandboxPathError, match="manifest root"):
            sb.manifest(("/etc",))
        assert sb.read_file("abs_inside") == b"inside\n" == sb.read_file("rel_inside")
        with pytest.raises(SandboxPathError, match="not a directory"):
            sb.exec("true", workdir="/app/nope")
        assert not os.path.exists("/etc/evil")


def test_tmp_and_home_persist_but_scratch_dirs_do_not(local_backend):
    with local_backend.create() as sb:
        sb.write_file("/tmp/t.txt", "tmp")
        sb.exec("echo home > ~/h.txt && echo scratch > /var/tmp/s.txt && echo run > /run/r")
        assert sb.exec("cat /tmp/t.txt ~/h.txt; find /var/tmp /run -mindepth 1 | wc -l").stdout == "tmphome\n0\n"
        assert sb.read_file("/root/h.txt") == b"home\n"
        assert set(sb.manifest(("/tmp", "/root"))) == {"/tmp", "/tmp/t.txt", "/root", "/root/h.txt"}
        snap = sb.snapshot()
    with local_backend.fork(snap) as f:
        assert f.exec("cat /tmp/t.txt /root/h.txt").stdout == "tmphome\n"
        assert f.exec("stat -c %a /tmp /root").stdout == "1777\n700\n"
    local_backend.release(snap)


def test_host_is_read_only_and_private_dirs_are_hidden(local_backend, monkeypatch):
    monkeypatch.setenv("PIVOTRL_SECRET_FOR_TEST", "leak")
    with local_backend.create() as sb:
        r = sb.exec("touch /usr/pivotrl_probe 2>/dev/null && echo wrote; ls /work /home 2>&1 | wc -l; "
                    "echo \"[$PIVOTRL_SECRET_FOR_TEST] $HOME $LANG\"")
        assert "wrote" not in r.stdout
        assert r.stdout.endswith("[] /root C.UTF-8\n")
        assert sb.exec("test -d /work || test -d /var/lib/docker").exit_code == 1
        assert not os.path.exists("/usr/pivotrl_probe")


def test_background_processes_end_with_their_exec(local_backend):
    with local_backend.create() as sb:
        sb.exec("(sleep 30; echo late > late.txt) & echo $! > pid")
        assert sb.exec("ps -e -o comm= | grep -c sleep").stdout.strip() == "0"


# -------------------------------------------------------------------------------- layers and storage


@pytest.mark.parametrize("fresh_backend", [{"max_layers": 3}], indirect=True)
def test_deep_snapshot_chains_are_squashed_and_stay_correct(fresh_backend):
    be = fresh_backend
    snaps = []
    with be.create() as sb:
        sb.exec("echo 0 > count && mkdir keep gone && echo k > keep/k && echo g > gone/g")
        snaps.append(sb.snapshot())
    for i in range(1, 8):
        with be.fork(snaps[-1]) as f:
            cmd = f"echo {i} > count && touch file{i}" + (" && rm -r gone" if i == 2 else "")
            assert f.exec(cmd).ok
            snaps.append(f.snapshot())
            assert len(f.stack) <= 3
    for s in snaps:
        assert len(s.ref.partition("=")[2].split(":")) <= 3
    with be.fork(snaps[-1]) as last:
        assert last.exec("cat count; ls").stdout == "7\ncount\n" + "".join(f"file{i}\n" for i in range(1, 8)) + "keep\n"
    with be.fork(snaps[1]) as early:
        assert early.exec("cat count gone/g").stdout == "1\ng\n"
    for s in snaps:
        be.release(s)
    assert _layer_dirs(be) == set()


def test_released_layers_are_freed_but_shared_ones_kept(fresh_backend):
    be = fresh_backend
    with be.create() as sb:
        sb.exec("echo a > a")
        base = sb.snapshot()
        sb.exec("echo b > b")
        child = sb.snapshot()
        same = sb.snapshot()
        assert same.ref.partition("=")[2] == child.ref.partition("=")[2]  # no change: no new layer
        assert same.ref != child.ref  # but a handle of its own (release is per handle)
    be.release(same)
    assert len(_layer_dirs(be)) == 2
    be.release(base)  # its layer is the bottom of `child`: kept
    assert len(_layer_dirs(be)) == 2
    with pytest.raises(SandboxError, match="released"):
        be.fork(base)
    with be.fork(child) as f:
        assert f.exec("cat a b").stdout == "a\nb\n"
    be.release(child)
    assert _layer_dirs(be) == set()


def test_snapshot_of_other_backend_is_rejected(local_backend):
    from pivot_envs.sandbox import Snapshot

    with pytest.raises(ValueError, match="docker"):
        local_backend.fork(Snapshot(backend="docker", ref="sha256:abc"))


# ---------------------------------------------------------------------------------- limits, cleanup


def test_each_sandbox_has_a_cgroup_that_is_removed(fresh_backend):
    be = fresh_backend
    from tests.conftest import require

    require(be.cgroups.available, f"no cgroups here: {be.cgroups.reason}")  # a FAILURE under CI=true
    sb = be.create(limits=SandboxLimits(memory_mb=48, timeout_s=5))
    mine = [c for c in be.cgroups.live() if c.endswith("/" + sb.id)]
    assert mine and all(os.path.isdir(c) for c in mine)
    hog = sb.exec("python3 -c \"x = b'a' * (300 << 20)\"")
    assert hog.exit_code == 137 and be.cgroups.oom_kills(sb.id) >= 1
    r = sb.exec("for i in $(seq 5); do sleep 30 & done; wait", timeout=1)
    assert r.timed_out and be.cgroups.pids(sb.id) == []
    sb.close()
    assert not any(os.path.exists(c) for c in mine)


def test_backend_close_removes_everything(fresh_backend):
    be = fresh_backend
    open_box = be.create()
    open_box.exec("echo x > f")
    snap = open_box.snapshot()
    be.fork(snap).exec("true")
    assert be.live_resources()
    root = be.root
    be.close()
    be.close()
    assert be.live_resources() == [] and not os.path.exists(root)
    assert root not in Path("/proc/self/mountinfo").read_text()
    with pytest.raises(SandboxError, match="closed"):
        open_box.exec("true")
    with pytest.raises(SandboxError, match="closed"):
        be.create()


def test_state_of_a_dead_backend_is_swept(tmp_path):
    """A backend killed without close() leaves mounts and cgroups; the next one removes them."""
    from pivot_envs.sandbox.local import LocalBackend
    from tests.conftest import require

    try:  # skipped like the other local tests on a machine without bubblewrap (a failure in CI)
        make_backend("local").close()
    except SandboxUnavailableError as e:
        require(False, f"local sandbox backend unavailable: {e}")

    script = ("import os\nfrom pivot_envs.sandbox.local import LocalBackend\n"
              f"be = LocalBackend(root={str(tmp_path)!r})\nsb = be.create()\nsb.exec('echo x > f')\n"
              "print(be.root, flush=True)\nos._exit(0)\n")
    dead_root = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))).stdout.strip()
    assert dead_root in Path("/proc/self/mountinfo").read_text()
    be = LocalBackend(root=str(tmp_path))
    try:
        assert not os.path.exists(dead_root)
        assert dead_root not in Path("/proc/self/mountinfo").read_text()
    finally:
        be.close()


def test_sandboxes_work_concurrently_from_threads(local_backend):
    """Env workers share one backend: creates, snapshots, forks and execs from several threads."""
    from concurrent.futures import ThreadPoolExecutor

    def worker(i: int) -> str:
        with local_backend.create() as sb:
            sb.exec(f"echo {i} > id")
            snap = sb.snapshot()
        try:
            with local_backend.fork(snap) as f:
                f.exec("echo forked >> id")
                return f.exec("cat id").stdout
        finally:
            local_backend.release(snap)

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(worker, range(8)))
    assert outs == [f"{i}\nforked\n" for i in range(8)]


def test_seccomp_filter_denies_the_listed_syscalls_and_allows_fifos(local_backend):
    """The hand-assembled BPF program: each denied syscall answers EPERM inside the sandbox (the
    table in seccomp.py is checked against the live kernel), clone3 ENOSYS, FIFOs still work."""
    from pivot_envs.sandbox import seccomp

    table = seccomp._ARCHES[__import__("platform").machine()][1]
    probe = ("import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\nout = []\n"
             "for name, nr in " + repr({n: table[n] for n in seccomp.DENIED if n in table}) + ".items():\n"
             "    rc = libc.syscall(nr, 0, 0, 0, 0, 0); out.append(f'{name} {rc} {ctypes.get_errno()}')\n"
             "rc = libc.syscall(" + str(table["clone3"]) + ", 0, 0); out.append(f'clone3 {rc} {ctypes.get_errno()}')\n"
             "print(chr(10).join(out))\n")
    with local_backend.create() as sb:
        sb.write_file("probe.py", probe)
        r = sb.exec("python3 probe.py")
        results = {ln.split()[0]: (int(ln.split()[1]), int(ln.split()[2])) for ln in r.stdout.splitlines()}
        import errno as errno_mod

        assert results.pop("clone3") == (-1, errno_mod.ENOSYS)
        # reboot/iopl etc. with zero args would do harm or fail differently if allowed; all must be EPERM
        assert {name: res for name, res in results.items() if res != (-1, errno_mod.EPERM)} == {}
        assert sb.exec("mkfifo p && test -p p && echo ok").stdout == "ok\n"


# ---------------------------------------------------------------------------- fork pool


def _waiting_bwraps(be) -> list[int]:
    """PIDs of this backend's bwrap processes started by this process (a pooled fork waits in one; its
    PID namespace's init, a bwrap child, is not counted)."""
    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", f"bwrap.*{be.root}"], check=False,
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _wait_for(predicate, seconds: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


PROBE = ("echo $0; env | sort; pwd; echo $$; grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; "
         "ls /proc/self/fd; cat f.txt")


def test_a_pooled_fork_runs_its_first_command_as_a_fresh_one_would(fresh_backend):
    # The fork pool hands out forks whose first exec's bwrap is already set up and waiting (perl reads
    # the command, then execs bash -c): the command must see exactly what a direct start shows it.
    be = fresh_backend
    with be.create() as seed:
        seed.exec("echo x > f.txt")
        snap = seed.snapshot("k")
    unpooled = make_backend("local", fork_pool=0)
    try:
        with unpooled.create() as s0:
            s0.exec("echo x > f.txt")
            snap0 = s0.snapshot("k")
        with unpooled.fork(snap0) as box:
            direct = box.exec(PROBE)
    finally:
        unpooled.close()
    be.fork(snap).close()  # a verdict-like fork: the snapshot gets no pool
    assert be.stats["pool_misses"] == 0 and be.fork_pool.items() == []
    be.warm(snap)  # what an env does at an episode reset
    assert _wait_for(lambda: len(be.fork_pool.items()) == 1)
    box = be.fork(snap)
    assert be.stats["pool_hits"] == 1
    first = box.exec(PROBE)
    assert (first.stdout, first.stderr, first.exit_code) == (direct.stdout, direct.stderr, direct.exit_code)
    assert "SHLVL=1" in first.stdout and "CapEff:\t0000000000000000" in first.stdout
    assert box.exec("exit 3").exit_code == 3 and box.exec("cat f.txt").stdout == "x\n"  # later execs: direct
    box.close()
    # Another workdir or environment cannot use the waiting exec: it is discarded unused.
    assert _wait_for(lambda: len(be.fork_pool.items()) == 1)
    with be.fork(snap) as box:
        r = box.exec("pwd; echo $V", workdir="/tmp", env={"V": "v"})
        assert r.stdout == "/tmp\nv\n"
    # Timeouts and empty commands behave as direct ones do.
    assert _wait_for(lambda: len(be.fork_pool.items()) == 1)
    with be.fork(snap) as box:
        r = box.exec("sleep 5", timeout=0.5)
        assert r.timed_out and r.exit_code == -1
    assert _wait_for(lambda: len(be.fork_pool.items()) == 1)
    with be.fork(snap) as box:
        assert box.exec("").exit_code == 0


def test_the_fork_pool_is_a_cache_dropped_with_its_snapshot_and_the_backend(fresh_backend):
    be = fresh_backend
    with be.create() as seed:
        snap = seed.snapshot("k")
    be.warm(snap)
    assert _wait_for(lambda: len(be.fork_pool.items()) == 1 and len(_waiting_bwraps(be)) == 1)
    assert be.live_resources() == []  # a pooled fork is no one's sandbox
    be.release(snap)  # its pool goes with it: the waiting bwrap is killed, its mount and cgroup removed
    assert be.fork_pool.items() == [] and _waiting_bwraps(be) == []
    with pytest.raises(SandboxError, match="released"):
        be.fork(snap)
    with be.create() as seed:
        snap = seed.snapshot("k2")
    be.warm(snap)
    assert _wait_for(lambda: len(be.fork_pool.items()) == 1)
    root = be.root
    be.close()
    assert _waiting_bwraps(be) == [] and not os.path.exists(root)


def test_a_waiting_exec_killed_from_outside_is_a_lost_sandbox(fresh_backend):
    # Infrastructure failure, not a verdict: the env masks the sample (SandboxLostError).
    import signal

    from pivot_envs.errors import SandboxLostError

    be = fresh_backend
    with be.create() as seed:
        snap = seed.snapshot("k")
    be.warm(snap)
    assert _wait_for(lambda: len(_waiting_bwraps(be)) == 1)
    box = be.fork(snap)
    os.kill(_waiting_bwraps(be)[0], signal.SIGKILL)
    with pytest.raises(SandboxLostError):
        box.exec("echo hi")
    box.close()


def test_episode_resets_warm_their_state_and_verdicts_leave_the_pool_alone(fresh_backend):
    # An agent loop resets to the same state again and again: the env names the state's snapshot to
    # the backend (warm), and the next reset's fork is a pool hit answering as a direct one would.
    # Pivot-mode verdict forks do not fill the pool (ready_pool.py: a refill beside each verdict cost more
    # than it saved).
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.domains.terminal.tasks import builtin_trajectories
    from pivot_envs.trajectory import load_trajectories

    be = fresh_backend
    traj = load_trajectories(builtin_trajectories("train"))[0]
    pivot = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=be, mode="pivot")
    try:
        _, info = pivot.reset(options={"trajectory": traj.id, "turn": 1})
        pivot.unwrapped.judge_actions([info["reference"]] * 3)
        assert be.fork_pool.items() == [] and be.stats["pool_hits"] == 0
    finally:
        pivot.close()
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=be, mode="episode")
    try:
        outputs = []
        for _ in range(3):
            env.reset(options={"trajectory": traj.id, "turn": 1})
            outputs.append(env.unwrapped._state.sandbox.exec("ls -la; echo $0 $$").stdout)
            assert _wait_for(lambda: len(be.fork_pool.items()) == 1)
        assert be.stats["pool_hits"] == 2 and len(set(outputs)) == 1
    finally:
        env.close()
