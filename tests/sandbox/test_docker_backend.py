"""Docker-specific sandbox tests: limits enforced by the container runtime, commit-based snapshots,
the fork pool, cleanup by label, and the image builder. The backend-agnostic contract lives in
tests/sandbox/test_contract.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from pivot_envs.errors import ImageNotFoundError, SandboxError
from pivot_envs.sandbox.base import SandboxLimits

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `sandboxes` is a repo-root package, not an installed one
    sys.path.insert(0, str(REPO))


@pytest.fixture
def box(docker_backend):
    sandbox = docker_backend.create()
    yield sandbox
    sandbox.close()


def _owned(backend) -> tuple[list[str], list[str]]:
    """(container ids, snapshot image ids) that carry `backend`'s instance label."""
    from pivot_envs.sandbox.docker.reaper import LABEL_BACKEND, LABEL_SNAPSHOT

    label = f"{LABEL_BACKEND}={backend.instance_id}"
    containers = [c.id for c in backend.client.containers.list(all=True, sparse=True, filters={"label": label})]
    images = [i.id for i in backend.client.images.list(filters={"label": [label, f"{LABEL_SNAPSHOT}=1"]})]
    return containers, images


# ---------------------------------------------------------------------------- exec


def test_exec_separates_streams_and_keeps_exit_code(box):
    result = box.exec("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.timed_out and not result.truncated and not result.ok
    assert box.exec("pwd").stdout == "/app\n"
    assert box.exec("pwd", workdir="/tmp").stdout == "/tmp\n"
    assert box.exec('echo "$GREETING"', env={"GREETING": "hi there"}).stdout == "hi there\n"


def test_state_persists_between_commands_and_stdin_is_empty(box):
    box.exec("echo 41 > n.txt")
    assert box.exec("echo $(( $(cat n.txt) + 1 ))").stdout == "42\n"
    result = box.exec("cat", timeout=5)  # must not wait for input
    assert result.ok and result.stdout == ""


def test_timeout_is_a_result_not_an_exception(box):
    result = box.exec("echo started; sleep 30", timeout=1)
    assert result.timed_out and result.exit_code == -1
    assert result.stdout == "started\n"
    assert result.duration_s < 5
    # a command that exits 124 by itself did not time out
    own = box.exec("exit 124")
    assert own.exit_code == 124 and not own.timed_out
    # the sandbox is still usable and the killed command is gone
    assert box.exec("ps -eo args | grep -c '^sleep 30$'").stdout.strip() == "0"


def test_output_flood_is_truncated_and_exit_code_survives(docker_backend):
    limits = SandboxLimits(output_bytes=1000)
    with docker_backend.create(limits=limits) as small:
        result = small.exec("head -c 50000000 /dev/zero | tr '\\0' x; echo tail >&2; exit 5")
        assert result.truncated and result.exit_code == 5
        assert result.stdout == "x" * 1000 and result.stderr == "tail\n"
        endless = small.exec("yes", timeout=2)
        assert endless.timed_out and endless.truncated and len(endless.stdout) == 1000
        exact = small.exec("head -c 1000 /dev/zero | tr '\\0' y")
        assert not exact.truncated and exact.stdout == "y" * 1000


# ---------------------------------------------------------------------------- limits


def test_no_network_by_default(box):
    connect = ("import socket; s = socket.socket(); s.settimeout(3); "
               "s.connect(('1.1.1.1', 53)); print('connected')")
    result = box.exec(f'python3 -c "{connect}"')
    assert result.exit_code != 0 and "connected" not in result.stdout
    assert "unreachable" in result.stderr.lower()
    interfaces = box.exec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout.split()
    assert interfaces == ["lo"]


def test_network_limit_off_gives_an_interface(docker_backend):
    with docker_backend.create(limits=SandboxLimits(network=True)) as online:
        interfaces = online.exec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout.split()
        assert "lo" in interfaces and len(interfaces) > 1


def test_memory_limit_kills_a_hog(docker_backend):
    with docker_backend.create(limits=SandboxLimits(memory_mb=64)) as small:
        hog = small.exec("python3 -c \"b = bytearray(256 * 1024 * 1024); print('survived')\"",
                         timeout=20)
        assert "survived" not in hog.stdout
        assert hog.exit_code == 137 and not hog.timed_out  # SIGKILL by the OOM killer
        assert small.exec("python3 -c \"b = bytearray(8 * 1024 * 1024); print('ok')\"").stdout == "ok\n"


def test_pids_limit_stops_a_fork_bomb(docker_backend):
    with docker_backend.create(limits=SandboxLimits(pids=64)) as small:
        bomb = small.exec("bomb() { bomb | bomb & }; bomb; sleep 30", timeout=2)
        assert bomb.timed_out
        assert "Resource temporarily unavailable" in bomb.stderr  # fork() refused by the limit
        # the timeout killed the whole bomb and the sandbox works again
        assert small.exec("ps -eo args | grep -c '^bash -c bomb'").stdout == "0\n"
        assert small.exec("echo alive").stdout == "alive\n"


def test_background_process_cannot_hold_exec_past_its_limit(box):
    result = box.exec("sleep 20 & echo started", timeout=1)
    assert result.stdout == "started\n" and result.exit_code == 0 and not result.timed_out
    assert result.duration_s < 5
    assert "Killed" not in result.stderr


# ---------------------------------------------------------------------------- files


def test_write_and_read_files(box):
    payload = bytes(range(256)) * 10
    box.write_file("deep/er/blob.bin", payload, mode=0o600)
    assert box.read_file("/app/deep/er/blob.bin") == payload
    assert box.exec("stat -c %a deep/er/blob.bin").stdout == "600\n"
    box.write_file("/tmp/note.txt", "héllo")
    assert box.exec("cat /tmp/note.txt").stdout == "héllo"
    box.write_file("/tmp/note.txt", "replaced")
    assert box.read_file("/tmp/note.txt") == b"replaced"
    box.exec("ln -s /tmp/note.txt link.txt")
    assert box.read_file("link.txt") == b"replaced"
    with pytest.raises(FileNotFoundError):
        box.read_file("missing.txt")
    with pytest.raises(IsADirectoryError):
        box.read_file("deep")


def test_close_is_idempotent_and_final(docker_backend):
    sandbox = docker_backend.create()
    container_id = sandbox.id
    sandbox.close()
    sandbox.close()
    with pytest.raises(SandboxError):
        sandbox.exec("true")
    # removed synchronously: gone the moment close() returns (no background removal to wait for)
    assert not docker_backend.client.containers.list(all=True, sparse=True, filters={"id": container_id})


def test_exec_output_keeps_every_frame_of_both_streams(box):
    # Many small frames interleaved on stdout and stderr, the first written at once (it arrives with
    # the HTTP headers: docker-py's own reader skipped such frames under load), and one large frame.
    r = box.exec("for i in $(seq 1 300); do echo out$i; echo err$i >&2; done; head -c 30000 /dev/zero | tr '\\0' x")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[:300] == [f"out{i}" for i in range(1, 301)] and lines[300] == "x" * 30000
    assert r.stderr.splitlines() == [f"err{i}" for i in range(1, 301)]


def test_close_without_waiting_is_accounted_until_the_container_is_gone(docker_backend):
    def listed(cid):
        return docker_backend.client.containers.list(all=True, sparse=True, filters={"id": cid})

    boxes = [docker_backend.create() for _ in range(3)]
    for b in boxes:
        b.close(wait=False)
        with pytest.raises(SandboxError):
            b.exec("true")
    assert docker_backend.stats["removals_in_background"] >= 3
    docker_backend.flush_removals()
    assert not any(listed(b.id) for b in boxes)
    # live_resources() flushes first: a pending removal is neither a leak nor hidden
    box = docker_backend.create()
    box.close(wait=False)
    assert docker_backend.live_resources() == [] and not listed(box.id)
    # a bounded backlog: with no room, close(wait=False) removes before it returns
    docker_backend.max_pending_removals = 0
    box = docker_backend.create()
    box.close(wait=False)
    assert not listed(box.id)


# ---------------------------------------------------------------------------- snapshots


def test_fork_sees_the_snapshot_not_later_writes_and_forks_are_independent(docker_backend, box):
    box.write_file("state.txt", "before")
    snap = box.snapshot("k1")
    box.write_file("state.txt", "after")
    box.exec("rm -f /tmp/gone; echo new > extra.txt")
    assert snap.backend == "docker" and snap.ref.startswith("sha256:") and snap.key == "k1"
    try:
        with docker_backend.fork(snap) as a, docker_backend.fork(snap) as b:
            assert a.id != b.id != box.id
            assert a.read_file("state.txt") == b"before"
            assert a.exec("test -e extra.txt").exit_code == 1
            a.write_file("state.txt", "a")
            assert b.read_file("state.txt") == b"before"
            assert a.exec("pwd").stdout == "/app\n"
        assert box.read_file("state.txt") == b"after"
    finally:
        docker_backend.release(snap)
    docker_backend.release(snap)  # idempotent
    with pytest.raises(ImageNotFoundError, match="released"):
        docker_backend.fork(snap)


def test_fork_keeps_the_source_limits(docker_backend):
    with docker_backend.create(limits=SandboxLimits(output_bytes=10)) as small:
        snap = small.snapshot()
        try:
            with docker_backend.fork(snap) as child:
                assert child.exec("seq 100").truncated
        finally:
            docker_backend.release(snap)


def test_manifest_sees_content_mode_and_links(box):
    box.exec("mkdir -p src && echo a > src/a.txt && ln -s src/a.txt lnk")
    before = box.manifest()
    assert before["/app"].kind == "dir"
    assert before["/app/src/a.txt"].kind == "file" and before["/app/src/a.txt"].mode == 0o644
    assert before["/app/lnk"] == before["/app/lnk"].__class__("link", before["/app/lnk"].mode, "src/a.txt")
    import hashlib
    assert before["/app/src/a.txt"].digest == hashlib.sha256(b"a\n").hexdigest()
    assert box.manifest() == before
    box.exec("chmod 755 src/a.txt")
    after_chmod = box.manifest()
    assert after_chmod["/app/src/a.txt"].mode == 0o755
    assert after_chmod["/app/src/a.txt"].digest == before["/app/src/a.txt"].digest
    box.exec("echo b > src/a.txt")
    assert box.manifest()["/app/src/a.txt"].digest != before["/app/src/a.txt"].digest
    only_src = box.manifest(("src",))
    assert set(only_src) == {"/app/src", "/app/src/a.txt"}
    assert box.manifest(("/does/not/exist",)) == {}


def test_release_while_a_fork_lives_does_not_break_it(docker_backend, box):
    box.write_file("x", "1")
    snap = box.snapshot()
    child = docker_backend.fork(snap)
    try:
        docker_backend.release(snap)
        assert child.read_file("x") == b"1"
        assert child.exec("echo ok").stdout == "ok\n"
    finally:
        child.close()


def test_missing_image_names_the_build_command(docker_backend):
    with pytest.raises(ImageNotFoundError, match="build"):
        docker_backend.create(image=f"pivotrl/no-such-image-{uuid.uuid4().hex[:8]}:latest")


# ---------------------------------------------------------------------------- pool and cleanup


def test_pool_serves_warm_forks_and_close_leaves_nothing():
    import time

    from pivot_envs.sandbox.docker import DockerBackend

    backend = DockerBackend(pool_size=2)
    try:
        seed = backend.create()
        seed.write_file("f.txt", "x")
        snap = seed.snapshot()
        backend.fork(snap).close()  # first fork: a miss that makes the snapshot hot
        deadline = time.monotonic() + 20
        while len(backend.live_containers()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # seed + 2 pooled
        assert len(backend.live_containers()) == 3
        started = time.monotonic()
        warm = backend.fork(snap)
        assert time.monotonic() - started < 0.15
        assert warm.read_file("f.txt") == b"x"
        assert backend.stats["pool_hits"] == 1 and backend.stats["pool_misses"] == 1
        containers, images = _owned(backend)
        assert len(containers) >= 3 and images == [snap.ref]
        # pooled containers are not sandboxes: only seed and warm count as live resources
        assert backend.live_resources() == sorted(f"container:{b.id}" for b in (seed, warm))
    finally:
        backend.close()
    backend.close()
    assert _owned(backend) == ([], [])
    with pytest.raises(SandboxError, match="closed"):
        backend.create()


def test_remove_stale_cleans_dead_owners_only(docker_backend):
    import socket

    from pivot_envs.sandbox.docker.reaper import (
        LABEL,
        LABEL_BACKEND,
        LABEL_HOST,
        LABEL_PID,
        remove_stale,
    )

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = docker_backend.client
    labels = {LABEL: "1", LABEL_BACKEND: "stale-test", LABEL_HOST: socket.gethostname()}
    orphan = client.containers.create(docker_backend.image, command=["true"],
                                      labels={**labels, LABEL_PID: str(dead.pid)})
    with docker_backend.create() as alive:  # our own, live process: must survive
        removed = remove_stale(client)
        assert set(removed) >= {"containers", "images"}  # counts: another process's reaper may win the race
        assert not client.api.containers(all=True, filters={"id": orphan.id})
        assert alive.exec("echo still here").stdout == "still here\n"


# ---------------------------------------------------------------------------- image builder


def test_builder_cli_uses_the_cache(docker_backend):
    proc = subprocess.run([sys.executable, "-m", "sandboxes.build"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"{docker_backend.image}: cached" in proc.stdout


def test_rewrite_missing_from_keeps_stages_scratch_and_available_images():
    from pivot_envs.images.build import rewrite_missing_from

    dockerfile = textwrap.dedent("""\
        ARG PY=3.11
        FROM python:${PY}-slim AS builder
        RUN echo build
        FROM --platform=linux/amd64 ubuntu:22.04
        COPY --from=builder /x /x
        FROM builder AS again
        FROM scratch
        FROM local/present:1
    """)
    text, replaced = rewrite_missing_from(dockerfile, "pivotrl/sandbox-base:latest",
                                          is_available=lambda image: image == "local/present:1")
    assert replaced == ["python:3.11-slim", "ubuntu:22.04"]
    lines = text.splitlines()
    assert lines[1] == "FROM pivotrl/sandbox-base:latest AS builder"
    assert lines[3] == "FROM --platform=linux/amd64 pivotrl/sandbox-base:latest"
    assert lines[5:] == ["FROM builder AS again", "FROM scratch", "FROM local/present:1"]


def test_build_task_image_falls_back_to_the_local_base(tmp_path, docker_backend):
    from pivot_envs.images.build import build_task_image

    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim\n"
        "RUN python3 -c 'import sys; print(sys.version_info[:2])' > /app/built-with.txt\n")
    tag = f"pivotrl/task-test-{uuid.uuid4().hex[:8]}:latest"
    try:
        assert build_task_image(tmp_path, tag) == tag
        with docker_backend.create(image=tag) as task_box:
            assert task_box.read_file("/app/built-with.txt") == b"(3, 11)\n"
        assert (tmp_path / "Dockerfile").read_text().startswith("FROM python:3.11-slim")
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
