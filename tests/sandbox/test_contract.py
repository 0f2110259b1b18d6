"""The sandbox contract (pivot_envs/sandbox/base.py), checked against every backend.

Each test runs once per backend through the `sandbox_backend` fixture (tests/conftest.py). The tests
use only the contract, plus one helper every backend provides for leak checks:
`backend.live_resources() -> list[str]` (local: overlay mounts and cgroups; docker: containers with
the backend's label), which is empty once all of its sandboxes are closed.

Commands are plain bash plus python3 (in the docker base image and on any host running the local
backend).
"""

from __future__ import annotations

import time

import pytest

from pivot_envs.sandbox import FileEntry, SandboxLimits

# ---------------------------------------------------------------------------------------------- exec


def test_exec_reports_exit_code_stdout_and_stderr(sandbox_backend):
    with sandbox_backend.create() as sb:
        r = sb.exec("echo out; echo err >&2; exit 3")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
        assert not r.ok and not r.timed_out and not r.truncated
        ok = sb.exec("printf 'a b\\n'; pwd")
        assert ok.ok and ok.stdout == f"a b\n{sb.workdir}\n" and ok.stderr == ""


def test_exec_env_and_workdir_arguments(sandbox_backend):
    with sandbox_backend.create() as sb:
        sb.exec("mkdir -p sub/deeper")
        r = sb.exec('echo "$GREETING"; pwd', env={"GREETING": "hello there"}, workdir=f"{sb.workdir}/sub")
        assert r.stdout == f"hello there\n{sb.workdir}/sub\n"
        assert sb.exec('echo "[$GREETING]"').stdout == "[]\n"  # env is per exec


def test_a_deleted_workdir_is_a_result_not_an_infrastructure_failure(sandbox_backend):
    # `rm -rf` of the working directory is something a model does; afterwards a command run elsewhere
    # must still work, and one run in the vanished directory fails as a command (exit != 0).
    with sandbox_backend.create() as sb:
        assert sb.exec("echo x > kept.txt").ok
        sb.exec(f"cd / && rm -rf {sb.workdir}")  # the local backend's workdir is a mount point: emptied, not removed
        assert sb.exec("echo alive; pwd", workdir="/").stdout == "alive\n/\n"
        assert not sb.exec("test -e kept.txt", workdir="/").ok or not sb.exec(f"test -e {sb.workdir}/kept.txt").ok
        if not sb.exec(f"test -d {sb.workdir}", workdir="/").ok:
            gone = sb.exec("pwd")
            assert not gone.ok and not gone.timed_out
        assert sb.exec(f"mkdir -p {sb.workdir} && echo back", workdir="/").ok  # and it can be made again


def test_state_persists_between_execs_in_the_workdir(sandbox_backend):
    with sandbox_backend.create() as sb:
        assert sb.exec("echo one > notes.txt && mkdir -p a/b && echo two > a/b/c.txt").ok
        assert sb.exec("cat notes.txt a/b/c.txt").stdout == "one\ntwo\n"
        assert sb.exec("echo three >> notes.txt; cd a && touch moved_here").ok
        r = sb.exec("cat notes.txt; pwd; ls a")
        assert r.stdout == f"one\nthree\n{sb.workdir}\nb\nmoved_here\n"  # files persist, `cd` does not


def test_timeout_is_a_result_and_the_next_exec_works(sandbox_backend):
    with sandbox_backend.create() as sb:
        t0 = time.monotonic()
        r = sb.exec("echo started; sleep 30; echo never", timeout=1.5)
        elapsed = time.monotonic() - t0
        assert r.timed_out and r.exit_code == -1 and not r.ok
        assert "never" not in r.stdout
        assert elapsed < 10, f"a 1.5 s timeout took {elapsed:.1f} s"
        after = sb.exec("echo alive")
        assert after.ok and after.stdout == "alive\n"


def test_default_timeout_comes_from_the_limits(sandbox_backend):
    with sandbox_backend.create(limits=SandboxLimits(timeout_s=1.0)) as sb:
        r = sb.exec("sleep 20")
        assert r.timed_out and r.duration_s < 10


def test_output_flood_is_truncated_to_the_limit(sandbox_backend):
    cap = 4096
    with sandbox_backend.create(limits=SandboxLimits(output_bytes=cap)) as sb:
        r = sb.exec("head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2; echo done > done.txt")
        assert r.truncated
        assert r.stdout == "a" * cap and r.stderr == "b" * cap
        assert r.exit_code == 0 and sb.exec("cat done.txt").stdout == "done\n"  # the command ran to its end
        small = sb.exec("echo short")
        assert not small.truncated and small.stdout == "short\n"


def test_endless_output_ends_with_the_timeout(sandbox_backend):
    with sandbox_backend.create(limits=SandboxLimits(output_bytes=1024)) as sb:
        t0 = time.monotonic()
        r = sb.exec("yes flood", timeout=2)
        assert time.monotonic() - t0 < 15
        assert r.truncated and len(r.stdout.encode()) <= 1024 and r.exit_code == -1
        assert sb.exec("echo alive").stdout == "alive\n"


# ------------------------------------------------------------------------------------------- limits


def test_no_network_but_loopback(sandbox_backend):
    with sandbox_backend.create() as sb:
        ifaces = sb.exec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
        assert ifaces.ok and ifaces.stdout.split() == ["lo"]
        r = sb.exec("timeout 5 bash -c 'echo > /dev/tcp/1.1.1.1/53' && echo connected")
        assert "connected" not in r.stdout and r.exit_code != 0
        loop = sb.exec("python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
                       "c=socket.create_connection(s.getsockname()); print('lo ok')\"")
        assert loop.stdout == "lo ok\n", loop.stderr


def test_memory_hog_is_killed_and_the_sandbox_survives(sandbox_backend):
    with sandbox_backend.create(limits=SandboxLimits(memory_mb=64, timeout_s=30)) as sb:
        r = sb.exec("python3 -c \"x = b'a' * (400 << 20); print('allocated', len(x))\"")
        assert not r.ok and "allocated" not in r.stdout, r
        assert not r.timed_out, "the limit must kill the hog, not the timeout"
        fine = sb.exec("python3 -c \"x = b'a' * (8 << 20); print('small ok')\"")
        assert fine.stdout == "small ok\n", fine.stderr


def test_pids_limit_caps_process_creation(sandbox_backend):
    script = ("import os, time\n"
              "n = 0\n"
              "try:\n"
              "    while n < 1000:\n"
              "        if os.fork() == 0:\n"
              "            time.sleep(20); os._exit(0)\n"
              "        n += 1\n"
              "except OSError:\n"
              "    pass\n"
              "print(n, flush=True)\n"
              "os._exit(0)\n")
    with sandbox_backend.create(limits=SandboxLimits(pids=32, timeout_s=20)) as sb:
        sb.write_file("forker.py", script)
        r = sb.exec("python3 forker.py")
        assert r.stdout.strip().isdigit(), r
        assert 0 < int(r.stdout) < 32


def test_fork_bomb_is_contained(sandbox_backend):
    with sandbox_backend.create(limits=SandboxLimits(pids=48, timeout_s=4)) as sb:
        t0 = time.monotonic()
        r = sb.exec("bomb() { bomb | bomb; }; bomb")
        assert not r.ok
        assert time.monotonic() - t0 < 20
        deadline = time.monotonic() + 15
        after = sb.exec("echo alive", timeout=10)
        while after.stdout != "alive\n" and time.monotonic() < deadline:  # the bomb's remains may linger
            time.sleep(0.5)
            after = sb.exec("echo alive", timeout=10)
        assert after.stdout == "alive\n"


# --------------------------------------------------------------------------------- snapshot and fork


def test_snapshot_and_fork_are_isolated_both_ways(sandbox_backend):
    be = sandbox_backend
    with be.create() as origin:
        origin.exec("echo base > shared.txt")
        snap = origin.snapshot()
        try:
            origin.exec("echo origin-after > shared.txt; touch origin_only")
            with be.fork(snap) as fork:
                assert fork.exec("cat shared.txt").stdout == "base\n"  # later writes don't reach the snapshot
                assert fork.exec("test -e origin_only").exit_code == 1
                fork.exec("echo fork > shared.txt; touch fork_only")
                assert origin.exec("cat shared.txt").stdout == "origin-after\n"  # fork writes don't leak back
                assert origin.exec("test -e fork_only").exit_code == 1
                with be.fork(snap) as fresh:  # nor into the snapshot
                    assert fresh.exec("cat shared.txt; ls").stdout == "base\nshared.txt\n"
        finally:
            be.release(snap)


def test_fork_of_a_fork(sandbox_backend):
    be = sandbox_backend
    snaps = []
    try:
        with be.create() as sb:
            sb.exec("echo 0 > level")
            snaps.append(sb.snapshot())
        for level in (1, 2, 3):
            with be.fork(snaps[-1]) as f:
                assert f.exec("cat level").stdout == f"{level - 1}\n"
                f.exec(f"echo {level} > level; touch made_at_{level}")
                snaps.append(f.snapshot())
        with be.fork(snaps[-1]) as last:
            assert last.exec("cat level; ls").stdout == "3\nlevel\nmade_at_1\nmade_at_2\nmade_at_3\n"
        with be.fork(snaps[1]) as middle:  # an older snapshot is unaffected by its descendants
            assert middle.exec("cat level; ls").stdout == "1\nlevel\nmade_at_1\n"
    finally:
        for s in snaps:
            be.release(s)


def test_deleted_files_stay_deleted_through_snapshot_and_fork(sandbox_backend):
    be = sandbox_backend
    snaps = []
    try:
        with be.create() as sb:
            sb.exec("mkdir -p gone/inner redone keep && echo x > gone/inner/f && echo old > redone/old "
                    "&& echo y > doomed.txt && echo k > keep/k")
            snaps.append(sb.snapshot())
        with be.fork(snaps[-1]) as f:
            assert f.exec("rm -r gone doomed.txt && rm -r redone && mkdir redone && echo new > redone/new").ok
            snaps.append(f.snapshot())
        with be.fork(snaps[-1]) as g:
            assert g.exec("ls; ls redone").stdout == "keep\nredone\nnew\n"
            assert g.exec("test -e gone/inner/f || test -e doomed.txt || test -e redone/old").exit_code == 1
            g.exec("echo again > doomed.txt")  # re-creating a deleted file works too
            snaps.append(g.snapshot())
        with be.fork(snaps[-1]) as h:
            assert h.exec("cat doomed.txt; ls redone").stdout == "again\nnew\n"
        with be.fork(snaps[0]) as original:  # the first snapshot still has everything
            assert original.exec("cat gone/inner/f doomed.txt redone/old").stdout == "x\ny\nold\n"
    finally:
        for s in snaps:
            be.release(s)


def test_sandbox_stays_usable_after_snapshot_and_release(sandbox_backend):
    be = sandbox_backend
    with be.create() as sb:
        sb.exec("echo 1 > n")
        s1 = sb.snapshot(key="first")
        assert s1.key == "first" and s1.backend == be.name and s1.workdir == sb.workdir
        sb.exec("echo 2 > n")
        s2 = sb.snapshot()
        be.release(s1)
        be.release(s1)  # idempotent
        assert sb.exec("cat n").stdout == "2\n"
        with be.fork(s2) as f:
            assert f.exec("cat n").stdout == "2\n"
        be.release(s2)


# ------------------------------------------------------------------------------------ files, manifest


def test_read_write_round_trip_including_binary(sandbox_backend):
    with sandbox_backend.create() as sb:
        blob = bytes(range(256)) * 64
        sb.write_file("data/blob.bin", blob)
        assert sb.read_file("data/blob.bin") == blob
        assert sb.read_file(f"{sb.workdir}/data/blob.bin") == blob
        sb.write_file(f"{sb.workdir}/text.txt", "héllo\n", mode=0o600)
        assert sb.read_file("text.txt") == "héllo\n".encode()
        assert sb.exec("cat text.txt; stat -c %a text.txt; wc -c < data/blob.bin").stdout == "héllo\n600\n16384\n"
        sb.write_file("text.txt", b"replaced")
        assert sb.read_file("text.txt") == b"replaced"
        sb.exec("printf 'from exec' > made.txt")
        assert sb.read_file("made.txt") == b"from exec"
        with pytest.raises(FileNotFoundError):
            sb.read_file("missing.txt")


def test_manifest_reports_kinds_modes_and_digests(sandbox_backend):
    import hashlib

    with sandbox_backend.create() as sb:
        sb.exec("mkdir -p bin shared && printf 'echo hi' > bin/run.sh && chmod 755 bin/run.sh && "
                "printf secret > key && chmod 600 key && chmod 1777 shared && ln -s bin/run.sh link && "
                "mkfifo pipe")
        m = sb.manifest()
        w = sb.workdir
        assert m[f"{w}/bin/run.sh"] == FileEntry("file", 0o755, hashlib.sha256(b"echo hi").hexdigest())
        assert m[f"{w}/key"] == FileEntry("file", 0o600, hashlib.sha256(b"secret").hexdigest())
        assert m[f"{w}/bin"] == FileEntry("dir", 0o755, "")
        assert m[f"{w}/shared"] == FileEntry("dir", 0o1777, "")
        assert m[f"{w}/link"].kind == "link" and m[f"{w}/link"].digest == "bin/run.sh"
        assert m[f"{w}/pipe"].kind == "other"
        assert all(p == w or p.startswith(w + "/") for p in m)
        sub = sb.manifest((f"{w}/bin",))
        assert f"{w}/bin/run.sh" in sub and f"{w}/key" not in sub


def test_manifest_is_deterministic_across_forks_and_sees_differences(sandbox_backend):
    be = sandbox_backend
    with be.create() as sb:
        sb.exec("mkdir src && echo 'print(1)' > src/main.py")
        snap = sb.snapshot()
    try:
        commands = ["echo a > out.txt", "mkdir -p x/y && chmod 700 x", "rm src/main.py", "ln -s x/y lnk"]
        forks = [be.fork(snap) for _ in range(2)]
        try:
            for cmd in commands:
                for f in forks:
                    assert f.exec(cmd).ok
            first, second = (f.manifest() for f in forks)
            assert first == second
            assert f"{forks[0].workdir}/src/main.py" not in first
            forks[1].exec("echo b > out.txt")
            assert forks[0].manifest() != forks[1].manifest()
        finally:
            for f in forks:
                f.close()
    finally:
        be.release(snap)


# ---------------------------------------------------------------------------------------- lifecycle


def test_close_is_idempotent_and_nothing_leaks(sandbox_backend):
    be = sandbox_backend
    before = set(be.live_resources())
    sb = be.create()
    sb.exec("echo x > f")
    snap = sb.snapshot()
    fork = be.fork(snap)
    fork.exec("true")
    assert set(be.live_resources()) - before, "live_resources() must report the open sandboxes"
    fork.close()
    sb.close()
    sb.close()
    with sb:  # the context manager closes again, harmlessly
        pass
    be.release(snap)
    assert set(be.live_resources()) <= before


def test_manifest_sees_files_the_capless_sandbox_cannot_read(sandbox_backend):
    """Commands run with no capabilities, so root inside cannot read a chmod-000 file or list a
    chmod-000 dir; the manifest (the verifier's view of the state) still hashes their contents."""
    import hashlib

    with sandbox_backend.create() as sb:
        sb.exec("echo secret > locked && chmod 000 locked && mkdir shut && echo x > shut/f && chmod 000 shut")
        assert sb.exec("cat locked").exit_code != 0  # really unreadable from inside
        m = sb.manifest()
        w = sb.workdir
        assert m[f"{w}/locked"] == FileEntry("file", 0, hashlib.sha256(b"secret\n").hexdigest())
        assert m[f"{w}/shut"] == FileEntry("dir", 0, "")
        assert m[f"{w}/shut/f"] == FileEntry("file", 0o644, hashlib.sha256(b"x\n").hexdigest())
