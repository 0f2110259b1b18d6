"""Attacks a model-written command could make, run against both sandbox backends.

For each: it is contained (the host is unchanged and the sandbox does not get what it asked for),
it ends in bounded time, and nothing is left behind once the sandbox is closed
(`backend.live_resources()` is empty of it). Through `PivotTerminal-v0` the same commands are
reward 0 with a reason, or a masked infrastructure failure, never a crash and never reward 1
(`test_attacks_through_the_env`).

The backends come from tests/conftest.py: a backend that cannot start here is a skip on a dev
machine and a FAILURE under CI=true. Every record of `ATTACK_TIMES` is printed at the end of the
session by `test_zz_print_attack_table` (the table of the issue note).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from pivot_envs.sandbox import SandboxLimits

ATTACK_TIMES: dict[tuple[str, str], tuple[bool, float]] = {}


def _record(backend, name: str, contained: bool, seconds: float) -> None:
    ATTACK_TIMES[(backend.name, name)] = (contained, seconds)


@pytest.fixture
def sandbox(sandbox_backend):
    """A fresh sandbox; after the test it is closed and the backend must hold nothing of it."""
    before = set(sandbox_backend.live_resources())
    sb = sandbox_backend.create(limits=SandboxLimits(timeout_s=10, pids=64, memory_mb=256, disk_mb=256))
    yield sb
    sb.close()
    assert set(sandbox_backend.live_resources()) <= before, "the attacked sandbox left something behind"


def _timed(sb, cmd: str, timeout: float = 10):
    t0 = time.monotonic()
    r = sb.exec(cmd, timeout=timeout)
    return r, time.monotonic() - t0


def _alive(sb) -> bool:
    for _ in range(20):  # a bomb's remains may need a moment to die
        if sb.exec("echo alive", timeout=10).stdout == "alive\n":
            return True
        time.sleep(0.25)
    return False


# ------------------------------------------------------------------------------- resource attacks


def test_fork_bomb(sandbox_backend, sandbox):
    r, dt = _timed(sandbox, ":(){ :|:& };:", timeout=4)
    # its exit status depends on where the pids limit hits first; contained = bounded and survivable
    contained = dt < 30 and _alive(sandbox)
    _record(sandbox_backend, "fork bomb", contained, dt)
    assert contained, (r, dt)


def test_memory_bomb(sandbox_backend, sandbox):
    r, dt = _timed(sandbox, "python3 -c \"x = bytearray(4 << 30); print('allocated')\"")
    contained = not r.ok and "allocated" not in r.stdout and not r.timed_out and _alive(sandbox)
    _record(sandbox_backend, "memory bomb (4 GiB, limit 256 MiB)", contained, dt)
    assert contained, r


def test_disk_fill_stops_at_the_quota_and_spares_the_host(sandbox_backend, sandbox):
    host_free = shutil.disk_usage("/").free
    r, dt = _timed(sandbox, "dd if=/dev/zero of=big.bin bs=1M count=30000 2>&1 | grep -o 'No space left on device'",
                   timeout=120)
    used_on_host = host_free - shutil.disk_usage("/").free  # noisy: other processes write too
    contained = ("No space left on device" in r.stdout and r.disk_full and not r.timed_out
                 and used_on_host < 2 * (256 << 20) + (512 << 20))
    _record(sandbox_backend, "disk fill (30 GB, quota 256 MiB)", contained, dt)
    assert contained, (r, used_on_host)
    size = int(sandbox.exec("stat -c %s big.bin").stdout)
    assert 200 << 20 < size <= 256 << 20
    # deleting the file gives the space back, and the flag goes with it
    assert not sandbox.exec("rm big.bin && echo freed").disk_full


def test_infinite_loop(sandbox_backend, sandbox):
    r, dt = _timed(sandbox, "while :; do :; done", timeout=2)
    contained = r.timed_out and dt < 15 and _alive(sandbox)
    _record(sandbox_backend, "infinite loop", contained, dt)
    assert contained, r


def test_output_flood(sandbox_backend, sandbox):
    r, dt = _timed(sandbox, "yes flood-flood-flood", timeout=3)
    contained = r.truncated and len(r.stdout.encode()) <= SandboxLimits().output_bytes and dt < 20
    _record(sandbox_backend, "output flood", contained, dt)
    assert contained, (r.truncated, len(r.stdout), dt)


# ------------------------------------------------------------------------------- escapes


def test_writes_outside_the_sandbox_do_not_reach_the_host(sandbox_backend, sandbox):
    tag = uuid.uuid4().hex[:12]
    host_paths = [f"/tmp/pivotrl-escape-{tag}", f"/etc/pivotrl-escape-{tag}", f"/usr/pivotrl-escape-{tag}",
                  f"/root/pivotrl-escape-{tag}"]
    cmd = "; ".join(
        ["mount -o remount,rw /etc", "mount -o remount,rw /", "mount -o remount,rw /usr",
         "mount --bind /tmp /etc", "mount -t tmpfs none /mnt"]
        + [f"echo x > {p}" for p in host_paths]) + "; true"
    r, dt = _timed(sandbox, cmd)
    leaked = [p for p in host_paths if os.path.exists(p)]
    contained = not leaked and dt < 15
    _record(sandbox_backend, "writes outside (host /tmp, /etc, /usr, /root, after remount)", contained, dt)
    for p in leaked:
        os.unlink(p)
    assert contained, (leaked, r)
    # and the mounts themselves were refused
    mounts = sandbox.exec("mount -o remount,rw /etc 2>&1; echo rc=$?").stdout
    assert "rc=0" not in mounts


def test_host_secrets_are_not_readable(sandbox_backend, sandbox):
    tag = uuid.uuid4().hex
    planted = [f"/root/.pivotrl-secret-{tag}"]
    for path in planted:
        with open(path, "w") as f:
            f.write(tag)
    try:
        with open("/etc/shadow") as f:
            host_shadow_lines = [ln for ln in f.read().splitlines() if ln.split(":")[1:2] not in (["*"], ["!"], ["!*"])]
        r, dt = _timed(sandbox, f"cat /etc/shadow /etc/gshadow; ls -a /root /home; cat /root/.pivotrl-secret-{tag}; "
                                f"grep -rs {tag} /root /home /etc /var 2>/dev/null | head -1; ls /var/lib/docker; true")
        leaked = tag in r.stdout or any(line in r.stdout for line in host_shadow_lines)
        contained = not leaked and dt < 20
        _record(sandbox_backend, "read host secrets (/etc/shadow, /root, /home)", contained, dt)
        assert contained, r.stdout[:500]
    finally:
        for path in planted:
            os.unlink(path)


def test_docker_socket_is_absent(sandbox_backend, sandbox):
    probe = ("import socket\n"
             "for p in ('/var/run/docker.sock', '/run/docker.sock'):\n"
             "    try:\n"
             "        s = socket.socket(socket.AF_UNIX); s.connect(p); print('CONNECTED', p)\n"
             "    except OSError as e:\n"
             "        print('refused', p, e.errno)\n")
    sandbox.write_file("probe.py", probe)
    r, dt = _timed(sandbox, "python3 probe.py; ls -la /var/run/docker.sock /run/docker.sock 2>&1")
    contained = "CONNECTED" not in r.stdout and dt < 15
    _record(sandbox_backend, "docker socket", contained, dt)
    assert contained, r.stdout


def test_raw_block_devices_are_unreachable(sandbox_backend, sandbox):
    devices = ["/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/loop0",
               "/dev/loop-control"]
    cmd = ("; ".join(f"dd if={d} of=/dev/null bs=512 count=1 2>/dev/null && echo READ {d}" for d in devices)
           + "; mknod raw_vda b 254 0 2>/dev/null && echo MKNOD; mknod raw_mem c 1 1 2>/dev/null && echo MKNOD; "
           "dd if=raw_vda of=/dev/null bs=512 count=1 2>/dev/null && echo READ raw; true")
    r, dt = _timed(sandbox, cmd)
    contained = "READ" not in r.stdout and "MKNOD" not in r.stdout and dt < 15
    _record(sandbox_backend, "raw block devices (/dev/sda, /dev/vda, /dev/mem, mknod)", contained, dt)
    assert contained, r.stdout
    assert sandbox.exec("mkfifo fifo && test -p fifo && echo fifo ok").stdout == "fifo ok\n"  # FIFOs still work


def test_no_capabilities_no_new_privs_seccomp(sandbox_backend, sandbox):
    r, dt = _timed(sandbox, "grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
    fields = dict(line.split(":\t") for line in r.stdout.strip().splitlines())
    contained = (fields.get("CapEff") == "0000000000000000" and fields.get("CapPrm") == "0000000000000000"
                 and fields.get("NoNewPrivs") == "1" and fields.get("Seccomp") == "2")
    _record(sandbox_backend, "capabilities (CapEff 0, no_new_privs, seccomp)", contained, dt)
    assert contained, fields
    # the seccomp filter itself: ptrace, unshare, keyctl, bpf are refused (EPERM), even with caps gone
    probe = ("import ctypes, os\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "calls = {'ptrace': lambda: libc.ptrace(16, 1, 0, 0), 'unshare': lambda: libc.unshare(0x10000000),\n"
             "         'keyctl': lambda: libc.syscall(250, 0, 0, 0, 0), 'bpf': lambda: libc.syscall(321, 0, 0, 0)}\n"
             "for name, call in calls.items():\n"
             "    rc = call(); print(name, rc, ctypes.get_errno())\n")
    sandbox.write_file("sys.py", probe)
    out = sandbox.exec("python3 sys.py").stdout.split("\n")
    results = {ln.split()[0]: ln.split()[1] for ln in out if ln}
    if sandbox_backend.name == "docker":
        # Docker's default profile (the one the docker backend keeps) allows ptrace of the
        # container's own processes (kernel >= 4.8): contained to the container, not refused.
        results.pop("ptrace")
    assert set(results.values()) == {"-1"}, results


def test_host_processes_are_invisible(sandbox_backend, sandbox):
    tag = uuid.uuid4().hex[:8]
    host = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # pivotrl-host-marker-{tag}"])
    try:
        # the marker is assembled inside the probe, so that no command line in the sandbox has it
        sandbox.write_file("ps.py", "import os\n"
                                    f"mark = 'pivotrl-host-' + 'marker-{tag}'\n"
                                    "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
                                    "seen = sum(mark in open(f'/proc/{p}/cmdline').read() for p in pids)\n"
                                    "print(len(pids)); print(seen)\n")
        r, dt = _timed(sandbox, "cat /proc/1/cmdline | tr '\\0' ' '; echo; python3 ps.py")
        lines = r.stdout.splitlines()
        pid1, count, seen = lines[0], int(lines[1]), int(lines[2])
        with open("/proc/1/cmdline", "rb") as f:
            host_pid1 = f.read().replace(b"\0", b" ").decode().strip()
        contained = seen == 0 and count < 40 and (pid1.strip() != host_pid1 or not host_pid1)
        _record(sandbox_backend, "host PID 1 / host processes visible", contained, dt)
        assert contained, r.stdout
    finally:
        host.kill()
        host.wait()


def test_network_egress_to_host_loopback_is_blocked(sandbox_backend, sandbox):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    got: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, addr = listener.accept()
                got.append(addr[0])
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        targets = ["127.0.0.1", "172.17.0.1"]  # host loopback; the docker bridge's host side
        cmd = "; ".join(f"timeout 3 bash -c 'echo hi > /dev/tcp/{t}/{port}' 2>/dev/null && echo CONNECTED {t}"
                        for t in targets) + "; true"
        r, dt = _timed(sandbox, cmd, timeout=15)
        time.sleep(0.3)
        contained = not got and "CONNECTED" not in r.stdout and dt < 15
        _record(sandbox_backend, "network egress to host loopback", contained, dt)
        assert contained, (got, r.stdout)
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_kill_all_processes(sandbox_backend, sandbox):
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        r, dt = _timed(sandbox, "sleep 30 & kill -9 -1; echo survived", timeout=10)
        host_alive = host.poll() is None
        contained = host_alive and dt < 15 and _alive(sandbox)
        _record(sandbox_backend, "kill -9 -1", contained, dt)
        assert contained, (r, host_alive)
    finally:
        host.kill()
        host.wait()


# ------------------------------------------------------------------------------- through the env

ENV_ATTACKS = [
    ("fork bomb", ":(){ :|:& };:"),
    ("disk fill", "dd if=/dev/zero of=big.bin bs=1M count=30000"),
    ("remount and write /etc", "mount -o remount,rw /etc; echo pwned > /etc/pivotrl-env-escape"),
    ("kill -9 -1", "kill -9 -1"),
    ("read /etc/shadow", "cat /etc/shadow"),
]


@pytest.mark.slow  # ~10-30 s each on a loaded 2-core box (an env replay per attack); CI runs them
@pytest.mark.parametrize("name, command", ENV_ATTACKS, ids=[a[0] for a in ENV_ATTACKS])
def test_attacks_through_the_env(sandbox_backend, name, command):
    """As a sampled action at a pivot state: a verdict of reward 0 with a reason, or masked; the
    demonstration still scores 1 afterwards; nothing is left behind."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.domains.terminal.tasks import builtin_trajectories
    from pivot_envs.parsing import render_bash_call

    traj = dict(builtin_trajectories("train")[0])
    traj["task"] = dict(traj["task"], timeout_s=5)
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=sandbox_backend, trajectory=0, reset_to_turn=0)
    t0 = time.monotonic()
    try:
        env.reset()
        _, reward, terminated, _, info = env.step(render_bash_call(command))
        assert terminated
        assert reward == 0.0 or info["masked"], info
        assert info["reason"] or info["masked"]
        env.reset()
        _, reward, *_ = env.step(info["reference"])
        assert reward == 1.0
    finally:
        env.close()
    assert time.monotonic() - t0 < 120
    assert not os.path.exists("/etc/pivotrl-env-escape")
    deadline = time.monotonic() + 15  # a detached loop device is freed asynchronously by the kernel
    while sandbox_backend.live_resources() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_backend.live_resources() == []


def test_zz_print_attack_table():
    """Prints the attack table of this session (backend, attack, contained, seconds)."""
    print("\n| backend | attack | contained | time (s) |\n|---|---|---|---|")
    for (backend, name), (contained, seconds) in sorted(ATTACK_TIMES.items()):
        print(f"| {backend} | {name} | {'yes' if contained else 'NO'} | {seconds:.2f} |")
