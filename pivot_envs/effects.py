"""What commands did to a sandbox: the `Outcome` of running them in a fork, measured the same way in
every sandboxed domain, and the normalisations that make two runs of the same work compare equal.

- file manifest of the state roots: every path, its kind, permission bits and content hash
  (modification times are not part of a `FileEntry`);
- archives (.tar*, .tgz, .zip, .gz) by their members, not their bytes (which embed creation times);
- git repositories by `GIT_SUMMARY` (HEAD's tree, the branch -> tree map, the commit count,
  `git status --porcelain`, and the index: path, mode and blob id of every staged entry, without
  the stat data `.git/index` caches) instead of the object store, whose commit ids depend on
  messages and dates;
- the state roots: every directory the backend persists (`persistent_roots`: the local backend's
  workdir, /tmp and /root; on docker, whose whole file system persists, the workdir and the
  system's writable dirs in `WHOLE_FS_STATE_DIRS`), minus files the container runtime rewrites at
  every start (`RUNTIME_FILES`);
- stdout with trailing whitespace of each line and leading/trailing blank lines dropped.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
import zipfile
from typing import Any

from pivot_envs.sandbox.base import FileEntry, Sandbox

GIT_SUMMARY = r"""for g in $(find {roots} -name .git -type d -prune 2>/dev/null | sort); do
  r=$(dirname "$g"); cd "$r" || continue
  echo "repo $r"; echo "head $(git rev-parse -q --verify 'HEAD^{{tree}}' 2>/dev/null)"
  echo "count $(git rev-list --all --count 2>/dev/null)"
  git for-each-ref --format='ref %(refname) %(objectname)' refs/heads refs/tags 2>/dev/null | while read -r _ n c; do
    echo "ref $n $(git rev-parse -q --verify "$c^{{tree}}" 2>/dev/null)"; done
  echo "current $(git symbolic-ref -q --short HEAD 2>/dev/null)"
  git status --porcelain 2>/dev/null | sed 's/^/status /'
  git ls-files --stage 2>/dev/null | sed 's/^/index /'
  git rev-list --all --max-count=1000 2>/dev/null | sed 's/^/commit /'
done"""

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".gz")


def archive_digest(path: str, data: bytes) -> str | None:
    """A digest of an archive's *members* (names, kinds, modes, contents), or None if `path` is not a
    readable archive. Archive bytes embed creation times (gzip header, tar/zip member mtimes), so two
    runs of the same `tar -czf` differ byte-wise; what they contain is the functional effect."""
    if not path.endswith(ARCHIVE_SUFFIXES):
        return None
    h = hashlib.sha256()
    try:
        if path.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in sorted(zf.infolist(), key=lambda i: i.filename):
                    h.update(f"{info.filename}|{info.external_attr >> 16 & 0o7777}|".encode())
                    h.update(hashlib.sha256(zf.read(info)).digest())
        elif ".tar" in path or path.endswith(".tgz"):
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for m in sorted(tf.getmembers(), key=lambda m: m.name):
                    h.update(f"{m.name.removeprefix('./')}|{m.type!r}|{m.mode & 0o7777}|{m.linkname}|".encode())
                    f = tf.extractfile(m) if m.isfile() else None
                    h.update(hashlib.sha256(f.read()).digest() if f else b"-")
        else:
            h.update(hashlib.sha256(gzip.decompress(data)).digest())
    except Exception:  # noqa: BLE001  (not really an archive, or corrupt: compare bytes as usual)
        return None
    return "archive:" + h.hexdigest()


def normalise_archives(box: Any, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
    """Replace the byte digest of archive files with `archive_digest` (read from the sandbox)."""
    out = dict(files)
    for path, entry in files.items():
        if entry.kind == "file" and path.endswith(ARCHIVE_SUFFIXES):
            digest = archive_digest(path, box.read_file(path))
            if digest:
                out[path] = FileEntry(entry.kind, entry.mode, digest)
    return out


def normalise_output(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def diff_paths(a: dict[str, FileEntry], b: dict[str, FileEntry], limit: int = 5) -> list[str]:
    """Up to `limit` paths whose entries differ between manifests `a` (reference) and `b` (action)."""
    out = []
    for p in sorted(set(a) | set(b)):
        if a.get(p) != b.get(p):
            what = "only in reference" if p not in b else "only in action" if p not in a else "differs"
            out.append(f"{p} ({what})")
            if len(out) >= limit:
                break
    return out


#: Directories whose contents are state on a backend whose whole file system persists (docker),
#: besides the workdir. Read-only system trees (/usr minus /usr/local, /bin, /lib) are left out:
#: hashing them at every verdict would cost seconds; writes there are rare and need root.
WHOLE_FS_STATE_DIRS = ("/tmp", "/root", "/home", "/etc", "/usr/local", "/opt", "/srv", "/var/tmp", "/var/log")
#: Files the container runtime writes at every container start (they name the container).
RUNTIME_FILES = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/mtab"})


def persistent_roots(box: Sandbox, workdir: str) -> tuple[str, ...]:
    """The directories of `box` whose contents survive between commands (and snapshots)."""
    declared = getattr(box, "persistent", None)  # the local backend says exactly what it stores
    dirs = sorted(set(declared) if declared else {workdir, *WHOLE_FS_STATE_DIRS})
    return tuple(d for d in dirs if not any(o != d and d.startswith(o.rstrip("/") + "/") for o in dirs))


@dataclasses.dataclass
class Outcome:
    """What one or more commands did to a fork of the state. `exit_code` and `timed_out` are the
    last command's; `exit_codes` has every command's (-1 = timed out), in order."""

    exit_code: int
    timed_out: bool
    stdout: str
    files: dict[str, FileEntry]
    git: str
    seconds: float
    exit_codes: tuple[int, ...] = ()
    disk_full: bool = False  # some command filled the sandbox's disk quota
    commits: frozenset[str] = frozenset()  # commit ids in the state's repositories (they name commits
    # by time and message, so outputs that print them are compared with the ids masked)


def measure_files(box: Sandbox, roots: tuple[str, ...]) -> tuple[dict[str, FileEntry], str, frozenset[str]]:
    """The file-system effect visible under `roots`: the manifest (git internals left out, archives
    by members), the git summary of every repository below them and their commit ids."""
    # git internals are compared through GIT_SUMMARY instead (commit ids depend on messages)
    manifest = box.manifest(roots)
    files = {p: e for p, e in manifest.items()
             if "/.git/" not in p and not p.endswith("/.git") and p not in RUNTIME_FILES}
    files = normalise_archives(box, files)
    # GIT_SUMMARY lists the `.git` directories under the roots, which the manifest holds too (it
    # sees at least what `find` in the sandbox sees): with none there it prints nothing, so the
    # exec (a bwrap start / `docker exec` per verdict) is skipped
    has_repo = any(e.kind == "dir" and p.endswith("/.git") for p, e in manifest.items())
    summary = box.exec(GIT_SUMMARY.format(roots=" ".join(roots)), timeout=30).stdout.splitlines() if has_repo else []
    commits = frozenset(line[7:] for line in summary if line.startswith("commit "))
    git = "".join(line + "\n" for line in summary if not line.startswith("commit "))
    return files, git, commits
