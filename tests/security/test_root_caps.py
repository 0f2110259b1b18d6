"""Root work real tasks do (`chown`, `chpasswd`, `useradd`) runs in sandboxes that ask for Docker's
default capabilities (`SandboxLimits(root_caps=True)`), on every backend, and such a sandbox is
still contained: no capability outside that allow-list (no CAP_SYS_ADMIN, NET_ADMIN, SYS_PTRACE,
...), no_new_privs, the seccomp filter, no mount, no host secret; on the local backend its root is
an unprivileged host uid. Sandboxes without it keep no capability at all (tests/security/test_attacks.py)."""

from __future__ import annotations

import os

import pytest

from pivot_envs.sandbox import SandboxLimits
from pivot_envs.sandbox.base import ROOT_CAPS

# Bit numbers of linux/capability.h.
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
            "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_MODULE": 16,
            "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_TIME": 25,
            "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31, "MAC_ADMIN": 33, "BPF": 39}
LIMITS = SandboxLimits(root_caps=True, timeout_s=30, memory_mb=256, disk_mb=256)


@pytest.fixture
def root_box(sandbox_backend):
    before = set(sandbox_backend.live_resources())
    sb = sandbox_backend.create(limits=LIMITS)
    yield sb
    sb.close()
    assert set(sandbox_backend.live_resources()) <= before


def test_user_management_works_with_root_caps(sandbox_backend, root_box):
    r = root_box.exec('echo "root:pw1" | chpasswd && echo chpasswd ok; useradd -m git && echo "git:pw2" | chpasswd '
                      '&& echo useradd ok; touch owned && chown git:git owned && stat -c %U:%G owned; su git -c id')
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[:3] == ["chpasswd ok", "useradd ok", "git:git"] and lines[3].startswith("uid="), r
    # the change is state: a snapshot keeps the account, a fork sees it
    uid = lines[3].split("(")[0].removeprefix("uid=")
    snap = root_box.snapshot()
    try:
        with sandbox_backend.fork(snap) as child:
            assert child.exec("id -u git && stat -c %U owned").stdout.split() == [uid, "git"]
    finally:
        sandbox_backend.release(snap)


def test_root_caps_are_docker_defaults_and_nothing_more(sandbox_backend, root_box):
    status = dict(line.split(":\t") for line in root_box.exec(
        "grep -E '^(CapPrm|CapEff|NoNewPrivs|Seccomp):' /proc/self/status").stdout.strip().splitlines())
    eff = int(status["CapEff"], 16)
    assert eff == sum(1 << CAP_BITS[c] for c in ROOT_CAPS), status
    for dangerous in ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH",
                      "SYS_TIME", "SYS_BOOT", "MAC_ADMIN", "BPF"):
        assert not eff >> CAP_BITS[dangerous] & 1, dangerous
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    r = root_box.exec("mount -t tmpfs none /mnt 2>&1 || mount -o remount,rw /usr 2>&1; echo rc=$?")
    assert r.stdout.strip().endswith("rc=32") or "denied" in r.stdout, r.stdout  # mount refused


def test_root_caps_do_not_reach_host_secrets(sandbox_backend, root_box):
    with open("/etc/shadow") as f:
        hashes = [ln.split(":")[1] for ln in f.read().splitlines() if len(ln.split(":")[1]) > 3]
    out = root_box.exec("cat /etc/shadow /etc/gshadow; ls -a /root /home; ls /var/lib/docker").stdout
    assert not any(h in out for h in hashes)
    assert root_box.exec("test -S /var/run/docker.sock || test -S /run/docker.sock").exit_code != 0


def test_local_root_caps_root_is_an_unprivileged_host_uid(local_backend):
    from pivot_envs.sandbox.local.userns import HOST_BASE

    with local_backend.create(limits=LIMITS) as sb:
        sb.exec("echo x > made-inside && useradd bob && touch bobs && chown bob bobs")
        sb.write_file("made-outside", "y")
        uids = {name: os.lstat(f"{sb.merged}{sb.workdir}/{name}").st_uid
                for name in ("made-inside", "bobs", "made-outside")}
    assert uids["made-inside"] == uids["made-outside"] == HOST_BASE and uids["bobs"] > HOST_BASE, uids
