"""What a local sandbox sees of the host: its system dirs bound read-only, without secrets.

* The host's system directories (HOST_SYSTEM_DIRS) and, from /var, only the package databases
  (HOST_VAR_PATHS), read-only; symlinks stay symlinks. /home, /work, /mnt, /sys, the rest of /var
  and other host directories are hidden.
* /etc is a filtered copy taken when the backend starts (`filtered_copy`), without /etc/shadow,
  /etc/gshadow, keys and every other file "other" users may not read; such files elsewhere in the
  binds are masked by empty stand-ins (`host_masks`); host /root, /home, /var/lib/docker and the
  Docker socket are never bound.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Host directories bound read-only into every sandbox (those that exist; symlinks stay symlinks).
HOST_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
#: The parts of the host's /var a sandbox sees (package databases: `dpkg -l`, `apt list` work).
HOST_VAR_PATHS = ("/var/lib/dpkg", "/var/lib/apt", "/var/cache")

#: Host files and dirs that are never shown, even when world-readable (hashes, keys, the Docker
#: socket); besides these, every entry under the bound host dirs that "other" users cannot read is
#: masked too (see `host_masks`), because uid 0 in the sandbox still passes owner-permission checks.
HOST_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
                "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private", "/etc/docker", "/var/run/docker.sock",
                "/run/docker.sock", "/var/lib/docker", "/root", "/home")


def norm(path: str) -> str:
    """Lexically normalised absolute path ('//a/./b/' -> '/a/b')."""
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/")


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def validate_workdir(workdir: str) -> str:
    """`workdir` normalised; ValueError when it lies in what the host view binds read-only."""
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise ValueError(f"workdir must be an absolute path, got {workdir!r}")
    normed = norm(workdir)
    top = normed.strip("/").split("/")[0]
    if normed == "/" or top in HOST_SYSTEM_DIRS or top in ("proc", "dev", "sys", "var", "run"):
        raise ValueError(
            f"workdir {workdir!r} is inside the host system dirs the local backend binds read-only "
            f"(/{', /'.join(HOST_SYSTEM_DIRS)}, /var, /proc, /dev, /sys, /run); use a path such as /app "
            "or /workspace")
    if any(c in normed for c in ":,=\\"):
        raise ValueError(f"workdir {workdir!r} must not contain ':', ',', '=' or '\\'")
    return normed


def host_binds(replaced: Mapping[str, str] | None = None) -> list[str]:
    """bwrap options that show the host's system dirs read-only (symlinks stay symlinks).
    `replaced` maps a host dir to the dir bound in its place (the filtered copy of /etc).

    Every bind costs a mount and a read-only remount at each exec (~0.2 ms, and several ms on a
    loaded host whose mount table is long), so /var is not bound whole (that would also drag in
    Docker's container mounts); only HOST_VAR_PATHS are."""
    replaced = replaced or {}
    args: list[str] = []
    for path in ["/" + name for name in HOST_SYSTEM_DIRS] + list(HOST_VAR_PATHS):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", replaced.get(path, path), path]
    return args + ["--symlink", "/run", "/var/run", "--symlink", "/run/lock", "/var/lock"]


def secret(path: str, st: os.stat_result) -> bool:
    """Whether the local sandbox must not show `path`: listed in HOST_SECRETS, or a file or dir
    that "other" users may not read (uid 0 in the sandbox keeps owner access without capabilities)."""
    if path in HOST_SECRETS:
        return True
    return (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and not st.st_mode & 0o004


def filtered_copy(src: str, dest: str) -> None:
    """Copy the tree `src` to `dest` without its secrets (`secret`): the sandbox's /etc. One bind
    of a copy costs far less per exec than one masking bind per secret (each bind is a mount,
    ~5 ms on a loaded host); the price is that host changes to /etc after the backend started are
    not seen (3 MB, ~1,200 entries, copied once per backend)."""
    os.mkdir(dest)
    dirs = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dest if rel == "." else os.path.join(dest, rel)
        keep = []
        for name in dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), os.path.join(target_dir, name))
            elif not secret(path, st):
                os.mkdir(os.path.join(target_dir, name))
                dirs.append((path, os.path.join(target_dir, name)))
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(path), os.path.join(target_dir, name))
                elif stat.S_ISREG(st.st_mode) and not secret(path, st):
                    shutil.copy2(path, os.path.join(target_dir, name), follow_symlinks=False)
            except OSError as e:  # vanished meanwhile, or unreadable: leave it out
                log.debug("not copied into the sandbox /etc: %s (%s)", path, e)
    for host_dir, copy_dir in reversed(dirs):  # modes last: a read-only dir must be filled first
        shutil.copystat(host_dir, copy_dir, follow_symlinks=False)
    shutil.copystat(src, dest)


def host_masks(stand_in_dir: str) -> list[str]:
    """bwrap options that hide host secrets under the read-only host binds other than /etc (a
    filtered copy) and /usr: HOST_SECRETS plus every non-empty file or dir there that "other" users
    may not read (empty lock files and dirs hold nothing). Each is covered by an empty stand-in
    with mode 000, one mount per exec each (3 on the dev host: debconf's passwords, ldconfig's
    cache, /opt/containerd)."""
    empty_file = os.path.join(stand_in_dir, "file")
    empty_dir = os.path.join(stand_in_dir, "dir")
    if not os.path.exists(empty_file):
        os.close(os.open(empty_file, os.O_CREAT | os.O_WRONLY, 0o000))
        os.mkdir(empty_dir, 0o000)
    bound = ["/" + n for n in HOST_SYSTEM_DIRS if os.path.isdir("/" + n) and not os.path.islink("/" + n)]
    bound += [p for p in HOST_VAR_PATHS if os.path.isdir(p)]
    found: set[str] = {p for p in HOST_SECRETS if any(inside(p, b) for b in bound) and not inside(p, "/etc")}
    for top in bound:
        if top in ("/usr", "/etc"):  # /usr: large, nothing secret; /etc: bound as a filtered copy
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                empty = st.st_size == 0 if stat.S_ISREG(st.st_mode) else (
                    stat.S_ISDIR(st.st_mode) and not os.listdir(path))
                if secret(path, st) and not empty:
                    found.add(path)
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in found]
    args: list[str] = []
    for path in sorted(found):
        if any(o != path and inside(path, o) for o in found) or not os.path.lexists(path):
            continue  # under a masked dir already, or absent
        if os.path.islink(path):
            continue  # a symlink's target is masked where it lies (if it is under a bound dir)
        stand_in = empty_dir if os.path.isdir(path) else empty_file
        args += ["--ro-bind", stand_in, path]
    return args
