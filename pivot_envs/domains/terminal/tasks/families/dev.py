"""Developer families: git workflows and writing small scripts."""

from __future__ import annotations

import random

from pivot_envs.domains.terminal.tasks.families._base import (
    WORDS,
    Draft,
    family,
    names,
    pick,
)
from pivot_envs.domains.terminal.tasks.spec import (
    GIT_ENV,
    SetupScript,
    fill,
    python_check,
)

GIT_PRELUDE = ("git init -q -b main {repo} && cd {repo} && git config user.name 'Pivot Agent' "
               "&& git config user.email agent@example.com")


@family("git_workflow", "git")
def git_workflow(rng: random.Random) -> Draft:
    draft = _git_workflow(rng)
    draft.env = dict(GIT_ENV)  # fixed identity and dates: same commit hashes on every replay
    return draft


def _git_workflow(rng: random.Random) -> Draft:
    repo = rng.choice(("repo", "service", "webapp", "toolkit"))
    variant = rng.choice(("fix_and_commit", "branch_commit", "revert"))
    module = f"{rng.choice(WORDS)}.py"
    factor = rng.randint(2, 9)
    good = f"def scale(x):\n    return x * {factor}\n"
    s = SetupScript().run(GIT_PRELUDE.format(repo=repo))
    s.file("README.md", f"# {repo}\n\nTools for {rng.choice(WORDS)} processing.\n")
    s.run("git add README.md && git commit -q -m 'Initial commit'")
    if variant == "fix_and_commit":
        bad = f"def scale(x):\n    return x + {factor}\n"
        s.file(module, bad).run(f"git add {module} && git commit -q -m 'Add scale helper'")
        msg = rng.choice((f"Fix scale to multiply by {factor}", "Fix scale helper", "scale: use multiplication"))
        test = python_check("""
import subprocess
def git(*a):
    return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True, check=True).stdout.strip()
assert open(os.path.join(REPO, MODULE)).read() == GOOD, f"{MODULE} is not fixed as asked"
assert git("log", "-1", "--format=%s") == MSG, f"the last commit message must be {MSG!r}"
assert git("rev-list", "--count", "HEAD") == "3", "make exactly one new commit on top of the history"
assert git("status", "--porcelain") == "", "the working tree must be clean (everything committed)"
assert git("rev-parse", "--abbrev-ref", "HEAD") == "main", "commit on main"
""", REPO=repo, MODULE=module, GOOD=good, MSG=msg)
        d = Draft(f"In the git repository /app/{repo}, the function scale() in {module} should multiply its "
                  f"argument by {factor} but it adds {factor} instead. Fix it (change only that line) and commit "
                  f"the fix on main with the message \"{msg}\".", s.script(), test, [], f"Fixed {module} and committed \"{msg}\".")
        d.step("Look at the repository state.", f"cd {repo} && git status && git log --oneline")
        d.step("Read the file.", f"cat {repo}/{module}")
        d.step("Fix the operator.", rng.choice((f"sed -i 's/return x + {factor}/return x * {factor}/' {repo}/{module}",
                                                f"cd {repo} && sed -i 's/x + /x * /' {module}")))
        d.step("Check the change.", f"cd {repo} && git diff")
        d.step("Commit it.", f"cd {repo} && git commit -am '{msg}'")
        d.step("Verify.", f"cd {repo} && git log --oneline && git status --short")
        return d
    if variant == "branch_commit":
        s.file(module, good).run(f"git add {module} && git commit -q -m 'Add scale helper'")
        branch = f"feature/{rng.choice(WORDS)}-{rng.choice(('docs', 'notes', 'config'))}"
        fname = rng.choice(("CHANGELOG.md", "NOTES.md", "docs/usage.md"))
        line = f"- {rng.choice(WORDS)} {rng.choice(WORDS)} support"
        msg = f"Add {fname.split('/')[-1]}"
        test = python_check("""
import subprocess
def git(*a):
    return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True, check=True).stdout.strip()
assert BRANCH in git("branch", "--format=%(refname:short)").split(), f"branch {BRANCH} does not exist"
assert git("show", f"{BRANCH}:{FNAME}") == LINE, f"{FNAME} on {BRANCH} must contain exactly the line {LINE!r}"
assert git("log", "-1", "--format=%s", BRANCH) == MSG, f"the commit on {BRANCH} must be titled {MSG!r}"
assert git("rev-list", "--count", BRANCH) == "3", f"{BRANCH} must have exactly one commit on top of main"
assert git("rev-list", "--count", "main") == "2", "main must not change"
assert git("status", "--porcelain") == "", "the working tree must be clean"
""", REPO=repo, BRANCH=branch, FNAME=fname, LINE=line, MSG=msg)
        d = Draft(f"In the git repository /app/{repo}, create a branch named {branch} from main, add a file "
                  f"{fname} containing the single line \"{line}\", and commit it on that branch with the message "
                  f"\"{msg}\". main itself must stay unchanged.", s.script(), test, [],
                  f"Created {branch} with one commit adding {fname}; main is unchanged.")
        d.step("Check the repository.", f"cd {repo} && git status && git branch")
        d.step("Create and switch to the branch.", rng.choice((f"cd {repo} && git checkout -b {branch}", f"cd {repo} && git switch -c {branch}")))
        mk = f"mkdir -p {repo}/docs && " if "/" in fname else ""
        d.step("Write the file.", f"{mk}echo '{line}' > {repo}/{fname}")
        d.step("Commit it.", f"cd {repo} && git add {fname} && git commit -m '{msg}'")
        d.step("Compare with main.", f"cd {repo} && git log --oneline main..{branch} && git status --short")
        return d
    s.file(module, good).run(f"git add {module} && git commit -q -m 'Add scale helper'")
    bad_line = f"DEBUG_{rng.choice(WORDS).upper()} = True\n"
    s.file(module, good + bad_line).run(f"git commit -q -am 'Enable {rng.choice(WORDS)} debugging'")
    test = python_check("""
import subprocess
def git(*a):
    return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True, check=True).stdout.strip()
assert open(os.path.join(REPO, MODULE)).read() == GOOD, f"{MODULE} must be back to its state before the last commit"
assert git("rev-list", "--count", "HEAD") == "4", "undo the commit with a new revert commit (history must not be rewritten)"
assert git("log", "-1", "--format=%s").startswith("Revert"), "the new commit should be a git revert commit"
assert git("status", "--porcelain") == "", "the working tree must be clean"
""", REPO=repo, MODULE=module, GOOD=good)
    d = Draft(f"The latest commit in /app/{repo} turned on a debug flag by mistake. Undo it with git revert "
              f"(a new commit; do not rewrite history) so that {module} is back to its previous content.",
              s.script(), test, [], "Reverted the debug commit with a new revert commit.")
    d.step("Look at the history.", f"cd {repo} && git log --oneline")
    d.step("What did the last commit change?", rng.choice((f"cd {repo} && git show --stat HEAD", f"cd {repo} && git show HEAD")))
    d.step("Revert it.", f"cd {repo} && git revert --no-edit HEAD")
    d.step("Verify the file and the history.", f"cd {repo} && cat {module} && git log --oneline")
    return d


@family("script_write", "shell / Python scripts")
def script_write(rng: random.Random) -> Draft:
    variant = rng.choice(("py_stats", "sh_linecount"))
    s = SetupScript()
    if variant == "py_stats":
        name = rng.choice(("stats.py", "summarize.py", "numstats.py"))
        nums = [rng.randint(-50, 500) for _ in range(rng.randint(8, 15))]
        s.file("data/numbers.txt", "".join(f"{n}\n" for n in nums))
        hidden = [rng.randint(-100, 100) for _ in range(7)]
        def expect(xs: list[int]) -> str:
            return f"count={len(xs)} min={min(xs)} max={max(xs)} mean={sum(xs) / len(xs):.2f}"
        test = python_check("""
import subprocess, tempfile
assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} must be executable"
for nums, want in CASES:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("".join(f"{n}\\n" for n in nums) + "\\n")
    got = subprocess.run([os.path.abspath(SCRIPT), fh.name], capture_output=True, text=True, timeout=20).stdout.strip()
    os.unlink(fh.name)
    assert got == want, f"{SCRIPT} on {nums} printed {got!r}, expected {want!r}"
assert open("stats.txt").read().strip() == CASES[0][1], "stats.txt must hold the script's output for data/numbers.txt"
""", SCRIPT=name, CASES=[[nums, expect(nums)], [hidden, expect(hidden)]])
        d = Draft(f"Write an executable Python script /app/{name} that takes the path of a text file with one "
                  f"integer per line (blank lines are ignored) and prints exactly one line: "
                  f"\"count=<n> min=<min> max=<max> mean=<mean with 2 decimals>\". Run it on /app/data/numbers.txt "
                  f"and save its output to /app/stats.txt.", s.script(), test, [],
                  f"Wrote {name}, ran it on data/numbers.txt and saved the result to stats.txt.")
        d.step("Look at the input.", rng.choice(("head data/numbers.txt", "cat data/numbers.txt")))
        d.step("Write the script.", fill("""cat > @name@ <<'EOF'
#!/usr/bin/env python3
import sys

with open(sys.argv[1]) as fh:
    nums = [int(line) for line in fh if line.strip()]
print(f"count={len(nums)} min={min(nums)} max={max(nums)} mean={sum(nums) / len(nums):.2f}")
EOF
chmod +x @name@""", name=name))
        d.step("Run it and save the output.", rng.choice((f"./{name} data/numbers.txt > stats.txt && cat stats.txt",
                                                          f"./{name} data/numbers.txt | tee stats.txt")))
        d.step("Try it on a file with a blank line.", f"printf '3\\n\\n-1\\n4\\n' > /tmp/t.txt && ./{name} /tmp/t.txt")
        return d
    name = rng.choice(("linecount.sh", "count_lines.sh", "wcdir.sh"))
    folder = rng.choice(("notes", "texts", "logs"))
    files = {f"{n}.txt": "".join(f"{w}\n" for w in rng.choices(WORDS, k=rng.randint(1, 9))) for n in names(rng, 4)}
    for n, t in files.items():
        s.file(f"{folder}/{n}", t)

    def expect_lines(fs: dict[str, str]) -> list[str]:
        return [f"{n} {t.count(chr(10))}" for n, t in sorted(fs.items())]

    hidden_files = {f"{w}.txt": "x\n" * rng.randint(0, 5) for w in pick(rng, WORDS, 3)}
    test = python_check("""
import subprocess, tempfile
assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} must be executable"
for files, want in CASES:
    with tempfile.TemporaryDirectory() as d:
        for n, t in files.items():
            open(os.path.join(d, n), "w").write(t)
        open(os.path.join(d, "ignore.md"), "w").write("not counted\\n")
        got = subprocess.run([os.path.abspath(SCRIPT), d], capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    got = [" ".join(l.split()) for l in got]
    assert got == want, f"{SCRIPT} printed {got}, expected {want}"
""", SCRIPT=name, CASES=[[files, expect_lines(files)], [hidden_files, expect_lines(hidden_files)]])
    d = Draft(f"Write an executable bash script /app/{name} that takes a directory as its only argument and "
              f"prints, for every .txt file directly inside it (sorted by file name), a line \"<file name> "
              f"<number of lines>\". Other files are ignored. Try it on /app/{folder}.", s.script(), test, [],
              f"Wrote {name}; it prints the line count of each .txt file in the given folder.")
    d.step("See the sample folder.", f"ls {folder}")
    if rng.random() < 0.5:
        body = 'for f in "$dir"/*.txt; do\n    [ -e "$f" ] || continue\n    printf \'%s %s\\n\' "$(basename "$f")" "$(wc -l < "$f")"\ndone'
    else:
        body = 'find "$dir" -maxdepth 1 -type f -name \'*.txt\' | sort | while read -r f; do\n    echo "$(basename "$f") $(wc -l < "$f")"\ndone'
    d.step("Write the script.", fill("""cat > @name@ <<'EOF'
#!/bin/bash
# Print "<name> <lines>" for each .txt file directly inside the given directory.
set -euo pipefail
dir="${1:?usage: @name@ DIR}"
@body@
EOF
chmod +x @name@""", name=name, body=body))
    d.step("Run it on the sample folder.", f"./{name} {folder}")
    d.step("Compare with wc.", f"wc -l {folder}/*.txt")
    return d
