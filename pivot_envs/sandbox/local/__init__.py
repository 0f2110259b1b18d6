"""The `local` sandbox backend: bubblewrap process isolation plus overlayfs snapshots, on the host.

Why it exists: a Docker fork (commit + run) costs hundreds of milliseconds; PivotRL resets to pivot
states thousands of times, so the local backend makes a fork cost one overlay mount (~1 ms) and an
exec cost one `bwrap` start. benchmarks/local_sandbox_micro.py measures it next
to the raw mount+bwrap floor: fork + first exec ran at 0.7x that floor on a loaded 2-core VM.
The fork pool (pivot_envs/sandbox/ready_pool.py, as on docker) keeps one fork per recently forked
snapshot ready, with its first exec's `bwrap` already set up and waiting for the command
(`LocalSandbox.prestart`): a warm reset then skips the mount, the cgroup and bwrap's start.

What a sandbox sees
    * The host's system directories (/usr, /bin, /lib*, /sbin, /etc, /opt, and from /var only the
      package databases), READ-ONLY. The sandbox runs the host's tools; it cannot run Docker images
      (`create(image=...)` accepts only None or "host"). /home, /work, /mnt, /sys, the rest of /var
      and other host directories are hidden.
    * Persistent state, captured by `snapshot()` and restored by `fork()`: the workdir (default
      /app), /tmp and /root (HOME). Everything else is either read-only or scratch: writes outside
      the read-only binds (/run, /var/tmp, /dev/shm, new top-level dirs) land on a tmpfs that is
      fresh at every exec. This differs from the docker backend, whose
      whole container file system persists: a command that installs into /usr fails here.
    * No background process survives its `exec`: each exec runs in its own PID namespace, which the
      kernel tears down when the command exits (docker keeps them running in the container).
    * No network (a private network namespace with loopback only) unless `limits.network`.
    * uid 0 inside a user namespace that maps only root: `chown` to other users fails.
    * No capabilities (`--cap-drop ALL`: CapEff 0, so no remount of the read-only binds and no
      reading past file permissions), no_new_privs, and a seccomp filter (seccomp.py) that denies
      the mount API, new namespaces, ptrace, keyctl, bpf, module loading, kexec and raw devices.
    * Unless `limits.root_caps`: then root holds Docker's default capabilities (base.ROOT_CAPS) in
      a user namespace that maps sandbox uids 0..65535 to unprivileged host uids (userns.py), and
      /etc (a copy with locked shadow files) is persistent state, so `chown`, `chpasswd` and
      `useradd` work; no_new_privs, the seccomp filter and the read-only host view stay.
    * No host secrets: /etc is a copy taken when the backend starts, without /etc/shadow,
      /etc/gshadow, keys and every other file "other" users may not read; such files elsewhere in
      the binds are masked; host /root, /home, /var/lib/docker and the Docker socket are never bound.
    * A disk quota (`limits.disk_mb`): the upper dirs live on the sandbox's own loop-mounted ext4
      volume (pivot_envs/sandbox/volumes.py), so a write past it fails with ENOSPC and `ExecResult.disk_full` is set.

Limits: one cgroup per sandbox (v1: memory, pids, cpu controllers; v2: the same in one directory)
joined by a tiny `sh` wrapper before it execs `bwrap`. Without usable cgroups the backend falls back
to rlimits (`prlimit`) and logs a warning: memory becomes an address-space cap, pids a per-user
process cap, and there is no CPU cap.

A sandbox is not thread-safe (one exec at a time); the backend is (many sandboxes in threads).

One job per module:
    mounts.py     overlay mount/unmount (direct syscalls)
    cgroups.py    one cgroup per sandbox, v1 or v2
    hostview.py   the read-only, filtered view of the host
    layers.py     snapshot refs, squashing, the trash reaper
    pool.py       the per-sandbox quota volumes and the pool of ready ones
    userns.py     the user namespace of root_caps sandboxes
    sandbox.py    LocalSandbox: exec (bwrap; pre-started for pooled forks), files, manifest, freeze
    backend.py    LocalBackend: create/fork/snapshot/release, layer GC, close, stale-state sweep
"""

from __future__ import annotations

from pivot_envs.sandbox.local.backend import LocalBackend, sweep_stale_roots
from pivot_envs.sandbox.local.sandbox import (
    LocalSandbox,
    SandboxPathError,
    persistent_dirs,
)

__all__ = ["LocalBackend", "LocalSandbox", "SandboxPathError", "persistent_dirs", "sweep_stale_roots"]
