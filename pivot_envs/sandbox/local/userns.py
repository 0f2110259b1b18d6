"""The user namespace of local sandboxes that run with `limits.root_caps`.

Root in such a sandbox holds Docker's default capabilities (chown, setuid, ...), so it must hold
them over nothing of the host's: the namespace maps sandbox uids and gids 0..COUNT-1 to the host
range HOST_BASE..HOST_BASE+COUNT-1, which no host account uses. Capabilities in it apply only to
files owned inside that range (the sandbox's own), never to host files (those show as nobody).

bubblewrap maps a single uid when it makes a user namespace, so the backend makes this one itself,
once: a short-lived `unshare --user` holder process, whose maps the backend (host root) writes and
whose namespace it keeps open by a file descriptor; every such exec enters it with `nsenter`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from pivot_envs.errors import SandboxUnavailableError

#: First host uid/gid of the sandbox range (65536 ids, like /etc/subuid's conventional ranges, but
#: far above them so that no host user or subordinate range overlaps).
HOST_BASE = 0x3F000000
COUNT = 65536

NSENTER_HINT = "install util-linux (nsenter, unshare)"


class UserNamespace:
    """An open user namespace with the range mapping (see the module docstring)."""

    def __init__(self) -> None:
        unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
        if unshare is None or nsenter is None:
            raise SandboxUnavailableError(f"root_caps sandboxes on the local backend need nsenter and unshare; "
                                          f"{NSENTER_HINT}")
        self.nsenter: str = nsenter
        own = os.stat("/proc/self/ns/user").st_ino
        holder = subprocess.Popen([unshare, "--user", "--", "sleep", "60"], stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while os.stat(f"/proc/{holder.pid}/ns/user").st_ino == own:  # until it has unshared
                if holder.poll() is not None or time.monotonic() > deadline:
                    raise SandboxUnavailableError("could not make a user namespace (`unshare --user` failed)")
                time.sleep(0.001)
            for kind in ("uid_map", "gid_map"):
                with open(f"/proc/{holder.pid}/{kind}", "w") as f:
                    f.write(f"0 {HOST_BASE} {COUNT}\n")
            self.fd = os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            holder.kill()
            holder.wait()

    def enter_argv(self) -> list[str]:
        """The command prefix that runs the rest as root of the namespace (pass `fd` to the child)."""
        return [self.nsenter, f"--user=/proc/self/fd/{self.fd}", "--setuid", "0", "--setgid", "0", "--"]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def shift_owner(path: str) -> None:
    """Give `path` and everything below it (not following symlinks) the owner it would have inside
    the namespace: host uid/gid n becomes HOST_BASE + n (ids already in the range stay)."""
    def shift(p: str) -> None:
        st = os.lstat(p)
        uid = st.st_uid if st.st_uid >= HOST_BASE else HOST_BASE + st.st_uid % COUNT
        gid = st.st_gid if st.st_gid >= HOST_BASE else HOST_BASE + st.st_gid % COUNT
        os.lchown(p, uid, gid)

    shift(path)
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            shift(os.path.join(top, name))


def own(entry: str | int) -> None:
    """Make `entry` (a path, not followed, or an open fd; made by the backend) owned by root of the
    namespace."""
    if isinstance(entry, int):
        os.fchown(entry, HOST_BASE, HOST_BASE)
    else:
        os.lchown(entry, HOST_BASE, HOST_BASE)


def write_locked_shadow(etc: str) -> None:
    """Give the /etc copy at `etc` a `shadow` and `gshadow` (the filtered copy has none: the host's
    hashes never enter a sandbox) with every account and group of its passwd/group files locked
    ("*"), so that tools that rewrite them (chpasswd, useradd, passwd) work as on a real system."""
    groups = {}
    with open(os.path.join(etc, "group")) as f:
        for line in f:
            parts = line.rstrip("\n").split(":")
            if len(parts) >= 3:
                groups[parts[0]] = int(parts[2])
    with open(os.path.join(etc, "passwd")) as f:
        users = [line.split(":", 1)[0] for line in f if ":" in line]
    for name, lines in (("shadow", [f"{u}:*:19000:0:99999:7:::" for u in users]),
                        ("gshadow", [f"{g}:*::" for g in groups])):
        path = os.path.join(etc, name)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        os.chown(path, 0, groups.get("shadow", 0))
        os.chmod(path, 0o640)
