"""File-system families: organise by extension, permissions, cleanup, dedupe, archives."""

from __future__ import annotations

import random

from pivot_envs.domains.terminal.tasks.families._base import WORDS, Draft, family, names
from pivot_envs.domains.terminal.tasks.spec import SetupScript, fill, python_check

EXTENSIONS = ("txt", "csv", "jpg", "png", "pdf", "log", "md", "json", "py", "sh")


def _lines(rng: random.Random, n: int) -> str:
    return "".join(" ".join(rng.choices(WORDS, k=rng.randint(3, 7))) + "\n" for _ in range(n))


@family("organize_files", "file organisation")
def organize_files(rng: random.Random) -> Draft:
    src = rng.choice(("inbox", "downloads", "incoming", "dump"))
    dst = rng.choice(("sorted", "organized", "by_type", "filed"))
    exts = rng.sample(EXTENSIONS, rng.randint(3, 5))
    files = {f"{n}.{rng.choice(exts)}": _lines(rng, rng.randint(1, 4)) for n in names(rng, rng.randint(7, 12))}
    s = SetupScript().mkdir(src)
    for name, text in files.items():
        s.file(f"{src}/{name}", text)
    expected = {f"{dst}/{n.rsplit('.', 1)[1]}/{n}": t for n, t in files.items()}
    test = python_check("""
assert os.path.isdir(SRC), f"{SRC} must still exist"
assert os.listdir(SRC) == [], f"{SRC} is not empty: {os.listdir(SRC)}"
found = {}
for root, _, fs in os.walk(DST):
    for f in fs:
        p = os.path.join(root, f)
        found[p] = open(p).read()
assert found == EXPECTED, f"files under {DST} differ from the expected layout"
""", SRC=src, DST=dst, EXPECTED=expected)
    d = Draft(f"The folder /app/{src} holds files of mixed types. Move every file into a subfolder of "
              f"/app/{dst} named after its extension (for example /app/{src}/notes.txt goes to "
              f"/app/{dst}/txt/notes.txt). Keep the file names, and leave /app/{src} empty but in place.",
              s.script(), test, [], f"Moved all {len(files)} files from {src}/ into {dst}/<extension>/ folders.")
    d.step("Let me see what is in the folder first.", rng.choice((f"ls {src}", f"ls -1 {src}", f"ls -A {src}")))
    d.step("Which extensions are there, and how many of each?",
           rng.choice((f"ls {src} | sed 's/.*\\.//' | sort | uniq -c",
                       f"ls {src} | awk -F. '{{print $NF}}' | sort | uniq -c")))
    if rng.random() < 0.5:
        d.step("Move each file into a folder named after its extension.",
               fill('for f in @src@/*.*; do ext="${f##*.}"; mkdir -p "@dst@/$ext"; mv "$f" "@dst@/$ext/"; done',
                    src=src, dst=dst))
    else:
        d.step("Create the target folders, then move the files.",
               fill('for ext in $(ls @src@ | sed \'s/.*\\.//\' | sort -u); do mkdir -p "@dst@/$ext" && mv @src@/*."$ext" "@dst@/$ext/"; done',
                    src=src, dst=dst))
    d.step("Check the result.", f"find {dst} -type f | sort")
    d.step(f"And {src} should now be empty.", rng.choice((f"ls -A {src} | wc -l", f"find {src} -type f | wc -l")))
    return d


@family("permissions", "permissions")
def permissions(rng: random.Random) -> Draft:
    scripts = [f"{n}.sh" for n in names(rng, rng.randint(2, 4))]
    secrets = [f"{n}{rng.choice(('.key', '.pem', '.token'))}" for n in names(rng, rng.randint(2, 3))]
    docs = [f"{n}.md" for n in names(rng, 2)]
    sdir, kdir = rng.choice(("scripts", "bin", "tools")), rng.choice(("secrets", "keys", "private"))
    s = SetupScript().mkdir(sdir, kdir, "docs")
    for n in scripts:
        s.file(f"{sdir}/{n}", f"#!/bin/bash\necho {n[:-3]} done\n", 0o644)
    for n in secrets:
        s.file(f"{kdir}/{n}", f"{rng.getrandbits(64):016x}\n", 0o644)
    for n in docs:
        s.file(f"docs/{n}", _lines(rng, 2), 0o644)
    s.run(f"chmod 755 {kdir}")
    want = {f"{sdir}/{n}": "755" for n in scripts} | {f"{kdir}/{n}": "600" for n in secrets}
    want |= {f"docs/{n}": "644" for n in docs} | {kdir: "700"}
    test = python_check("""
import stat
for path, mode in WANT.items():
    got = format(stat.S_IMODE(os.stat(path).st_mode), "o")
    assert got == mode, f"{path}: mode {got}, expected {mode}"
""", WANT=want)
    d = Draft(f"Fix the permissions under /app: every script in /app/{sdir} must be executable by everyone "
              f"but writable only by its owner (mode 755); every file in /app/{kdir} must be readable and "
              f"writable by its owner only (600), and the /app/{kdir} directory itself must be 700. Leave "
              f"/app/docs as it is.", s.script(), test, [],
              f"Scripts in {sdir}/ are 755, files in {kdir}/ are 600 and {kdir}/ itself is 700.")
    d.step("Let me look at the current modes.", f"stat -c '%a %n' {sdir}/* {kdir} {kdir}/* docs/*")
    if rng.random() < 0.5:
        d.step("Make the scripts executable.", f"chmod 755 {sdir}/*.sh")
        d.step("Lock down the secret files and their folder.", f"chmod 600 {kdir}/* && chmod 700 {kdir}")
    else:
        d.step("Make the scripts executable and lock down the secrets.",
               f"chmod 755 {sdir}/*.sh && chmod 600 {kdir}/* && chmod 700 {kdir}")
    d.step("Verify.", f"stat -c '%a %n' {sdir}/* {kdir} {kdir}/*")
    d.step("Run one script to be sure it executes.", f"./{sdir}/{scripts[0]}")
    return d


@family("find_cleanup", "find / cleanup")
def find_cleanup(rng: random.Random) -> Draft:
    root = rng.choice(("workspace", "build", "cache", "scratch"))
    subdirs = rng.sample(WORDS, 3)
    variant = rng.choice(("age", "size"))
    s = SetupScript()
    keep: list[str] = []
    delete: list[str] = []
    for i, n in enumerate(names(rng, rng.randint(8, 12))):
        path = f"{root}/{rng.choice(subdirs)}/{n}"
        if variant == "age":
            ext = rng.choice((".tmp", ".tmp", ".dat"))
            old = rng.random() < 0.5
            s.file(path + ext, _lines(rng, 2))
            s.run(f"touch -d '{rng.randint(20, 40) if old else rng.randint(0, 2)} days ago' {path + ext}")
            (delete if ext == ".tmp" and old else keep).append(path + ext)
        else:
            big = rng.random() < 0.5
            kb = rng.randint(120, 300) if big else rng.randint(1, 40)
            s.file(path + ".bin", "")
            s.run(f"head -c {kb * 1024} /dev/zero | tr '\\0' 'x' > {path}.bin")
            (delete if big else keep).append(path + ".bin")
    if not delete:  # make sure there is something to do
        delete.append(keep.pop())
        s.run(f"touch -d '30 days ago' {delete[0]}" if variant == "age" else f"head -c 204800 /dev/zero > {delete[0]}")
        if variant == "age" and not delete[0].endswith(".tmp"):
            s.run(f"mv {delete[0]} {delete[0].rsplit('.', 1)[0]}.tmp")
            delete[0] = delete[0].rsplit(".", 1)[0] + ".tmp"
    days = rng.choice((7, 10, 14))
    test = python_check("""
for p in DELETE:
    assert not os.path.exists(p), f"{p} should have been deleted"
for p in KEEP:
    assert os.path.exists(p), f"{p} was deleted but should be kept"
""", DELETE=delete, KEEP=keep)
    if variant == "age":
        instr = (f"Clean up /app/{root}: delete every file ending in .tmp (at any depth) that was last "
                 f"modified more than {days} days ago. Keep everything else.")
        find = f"find {root} -type f -name '*.tmp' -mtime +{days}"
    else:
        instr = (f"/app/{root} is filling the disk. Delete every regular file under it (at any depth) "
                 f"that is larger than 100 KiB; keep the smaller ones.")
        find = f"find {root} -type f -size +100k"
    d = Draft(instr, s.script(), test, [], f"Deleted {len(delete)} files from {root}/.")
    d.step("First, an overview of the tree.", rng.choice((f"find {root} -type f | sort", f"ls -R {root}")))
    if variant == "size":
        d.step("Sizes of the files, in bytes.", f"find {root} -type f -exec stat -c '%s %n' {{}} + | sort -k2")
    d.step("Preview what would be deleted.", f"{find} | sort")
    d.step("Delete them.", rng.choice((f"{find} -delete", f"{find} -exec rm -f {{}} +")))
    d.step("Check that nothing matching is left.", f"{find} | wc -l")
    return d


@family("dedupe", "find / cleanup")
def dedupe(rng: random.Random) -> Draft:
    folder = rng.choice(("photos", "attachments", "uploads", "media"))
    ext = rng.choice(("jpg", "png", "bin", "dat"))
    fnames = sorted(f"{n}.{ext}" for n in names(rng, rng.randint(8, 12)))
    contents = [f"{rng.getrandbits(96):024x}\n" * rng.randint(1, 5) for _ in range(rng.randint(3, 6))]
    assign = {n: rng.choice(contents) for n in fnames}
    seen: dict[str, str] = {}
    removed = []
    for n in fnames:  # sorted: the first name of each content group is kept
        if assign[n] in seen:
            removed.append(n)
        else:
            seen[assign[n]] = n
    if not removed:
        assign[fnames[-1]] = assign[fnames[0]]
        removed = [fnames[-1]]
    s = SetupScript()
    for n in fnames:
        s.file(f"{folder}/{n}", assign[n])
    kept = [n for n in fnames if n not in removed]
    test = python_check("""
assert sorted(os.listdir(FOLDER)) == KEPT, f"{FOLDER} should hold exactly {KEPT}, has {sorted(os.listdir(FOLDER))}"
lines = open("removed.txt").read().split()
assert lines == REMOVED, f"removed.txt should list {REMOVED} (sorted, one per line), got {lines}"
""", FOLDER=folder, KEPT=kept, REMOVED=removed)
    d = Draft(f"/app/{folder} contains duplicate files (identical content, different names). For each "
              f"group of identical files keep only the one whose name sorts first alphabetically and "
              f"delete the others. Write the names of the deleted files (just the file names, sorted, one "
              f"per line) to /app/removed.txt.", s.script(), test, [],
              f"Removed {len(removed)} duplicates from {folder}/ and listed them in removed.txt.")
    d.step("List the files with their checksums.", f"cd {folder} && md5sum * | sort -k2")
    d.step("Group by checksum to see the duplicates.", f"cd {folder} && md5sum * | sort -k1,1 -k2,2 | uniq -w32 -D")
    d.step("Files whose checksum was already seen earlier in name order are the duplicates.",
           f"cd {folder} && md5sum * | sort -k2 | awk 'seen[$1]++ {{print $2}}' | sort > ../removed.txt && cat ../removed.txt")
    d.step("Delete them.", rng.choice((f"cd {folder} && xargs rm -v < ../removed.txt",
                                       f"cd {folder} && cat ../removed.txt | xargs rm")))
    d.step("Check that every checksum is now unique.", f"md5sum {folder}/* | awk '{{print $1}}' | sort | uniq -d | wc -l")
    return d


@family("archive", "archives")
def archive(rng: random.Random) -> Draft:
    variant = rng.choice(("tar_exclude", "extract_subset", "zip_docs"))
    proj = rng.choice(("project", "site", "service", "app_src"))
    s = SetupScript()
    if variant == "tar_exclude":
        files = {f"{proj}/{n}.{rng.choice(('py', 'txt', 'cfg'))}": _lines(rng, 2) for n in names(rng, 5)}
        logs = {f"{proj}/{rng.choice(('', 'logs/'))}{n}.log": _lines(rng, 3) for n in names(rng, 3)}
        files[f"{proj}/data/{rng.choice(WORDS)}.csv"] = "a,b\n1,2\n"
        for p, t in (files | logs).items():
            s.file(p, t)
        out = rng.choice(("backup", "snapshot", "release"))
        test = python_check("""
import tarfile
with tarfile.open(OUT) as t:
    members = {m.name.lstrip("./"): m for m in t.getmembers()}
    names = {n for n, m in members.items() if m.isfile()}
    assert names == set(FILES), f"archive files {sorted(names)} != expected {sorted(FILES)}"
    for n, text in FILES.items():
        assert t.extractfile(members[n]).read().decode() == text, f"{n} has wrong content"
assert os.path.isdir(PROJ), "the project folder must stay in place"
""", OUT=f"{out}.tar.gz", FILES=files, PROJ=proj)
        d = Draft(f"Create a gzip-compressed tar archive /app/{out}.tar.gz of the folder /app/{proj} "
                  f"(paths inside the archive must start with {proj}/) that leaves out every .log file. "
                  f"Keep the original folder.", s.script(), test, [],
                  f"Created {out}.tar.gz with {len(files)} files and no .log files.")
        d.step("See what is in the project.", f"find {proj} -type f | sort")
        d.step("Create the archive without the logs.",
               rng.choice((f"tar --exclude='*.log' -czf {out}.tar.gz {proj}",
                           f"tar -czf {out}.tar.gz --exclude='*.log' {proj}")))
        d.step("List the archive to check.", f"tar -tzf {out}.tar.gz | sort")
        d.step("Make sure no log slipped in.", f"tar -tzf {out}.tar.gz | grep -c '\\.log$' || true")
        return d
    if variant == "extract_subset":
        bundle = rng.choice(("bundle", "dist", "export"))
        inis = {f"config/{n}.ini": f"[main]\nname = {n}\nport = {rng.randint(1000, 9999)}\n" for n in names(rng, 3)}
        other = {f"{d_}/{n}.txt": _lines(rng, 2) for d_, n in zip(("docs", "bin", "docs"), names(rng, 3))}
        tmp = "/tmp/pivot_bundle"
        s.run(f"rm -rf {tmp} && mkdir -p {tmp}")
        for p, t in (inis | other).items():
            s.file(f"{tmp}/{p}", t)
        # byte-reproducible archive (fixed member order, times and owners; gzip without a timestamp),
        # so that every replay of the setup yields the same file
        s.run(f"tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - -C {tmp} . "
              f"| gzip -n > {bundle}.tar.gz && rm -rf {tmp}")
        dest = rng.choice(("restored", "recovered", "etc_new"))
        test = python_check("""
found = {}
for root, _, fs in os.walk(DEST):
    for f in fs:
        p = os.path.join(root, f)
        found[os.path.relpath(p, DEST)] = open(p).read()
assert found == INIS, f"{DEST} should hold exactly the .ini files, got {sorted(found)}"
assert os.path.exists(BUNDLE), "keep the archive"
""", DEST=dest, INIS=inis, BUNDLE=f"{bundle}.tar.gz")
        d = Draft(f"/app/{bundle}.tar.gz contains a whole deployment. Extract only the .ini files from "
                  f"its config/ folder into /app/{dest}, keeping their relative paths (so they end up as "
                  f"/app/{dest}/config/<name>.ini). Nothing else should be extracted.", s.script(), test, [],
                  f"Extracted the {len(inis)} .ini files into {dest}/config/.")
        d.step("List the archive contents.", f"tar -tzf {bundle}.tar.gz | sort")
        d.step("Extract just the config .ini files.",
               rng.choice((f"mkdir -p {dest} && tar -xzf {bundle}.tar.gz -C {dest} --wildcards './config/*.ini'",
                           f"mkdir -p {dest} && tar -xzf {bundle}.tar.gz -C {dest} $(tar -tzf {bundle}.tar.gz | grep '^./config/.*\\.ini$')")))
        d.step("Check what was extracted.", f"find {dest} -type f | sort")
        d.step("Look at one of them.", f"cat {dest}/{min(inis)}")
        return d
    docs = {f"docs/{n}.md": f"# {n}\n" + _lines(rng, 2) for n in names(rng, rng.randint(3, 5))}
    extra = {f"docs/{n}.txt": _lines(rng, 1) for n in names(rng, 2)}
    for p, t in (docs | extra).items():
        s.file(p, t)
    out = rng.choice(("docs", "handbook", "manual"))
    flat = {p.split("/")[1]: t for p, t in docs.items()}
    test = python_check("""
import zipfile
with zipfile.ZipFile(OUT) as z:
    got = {n: z.read(n).decode() for n in z.namelist() if not n.endswith("/")}
assert got == FLAT, f"zip entries {sorted(got)} != expected {sorted(FLAT)} (no folders in the names)"
""", OUT=f"{out}.zip", FLAT=flat)
    d = Draft(f"Create /app/{out}.zip containing every Markdown (.md) file from /app/docs, stored without "
              f"the folder (entries are just the file names, e.g. intro.md). Other files must not be included.",
              s.script(), test, [], f"Created {out}.zip with the {len(docs)} Markdown files.")
    d.step("List the docs folder.", "ls docs")
    d.step("Zip the Markdown files without their paths.",
           rng.choice((f"zip -j {out}.zip docs/*.md", f"cd docs && zip ../{out}.zip *.md")))
    d.step("Check the archive.", f"unzip -Z1 {out}.zip | sort")
    return d
