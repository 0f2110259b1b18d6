"""Runs INSIDE a docker sandbox (`python3 -c <this file's text> ROOT...`; docker/sandbox.py): walks
the roots given as arguments and prints {path: [kind, mode, digest]} as JSON.

Commands run without capabilities, so root in the container cannot read a file or list a dir whose
owner bits forbid it (chmod 000): those paths are listed under "" and the backend reads them
through the daemon (`get_archive`, done on the host side) instead. Written for any python3 the
task images carry (no annotations evaluated at run time, no newer syntax); never imported.
"""
import hashlib
import json
import os
import stat
import sys

out = {}  # type: dict[str, object]
unreadable = []  # type: list[str]


def entry(path):  # type: (str) -> list
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ["link", mode, os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            unreadable.append(path)
        return ["dir", mode, ""]
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except PermissionError:
            unreadable.append(path)
            return ["file", mode, ""]
        return ["file", mode, h.hexdigest()]
    return ["other", mode, ""]


for root in sys.argv[1:]:
    if not os.path.lexists(root):
        continue
    out[root] = entry(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                out[path] = entry(path)
out[""] = unreadable
json.dump(out, sys.stdout)
