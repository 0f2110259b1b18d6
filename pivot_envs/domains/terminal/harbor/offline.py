"""Make a task's tests run with no network: install what they install when the image is built.

Public `test.sh` / `run-tests.sh` scripts usually install their runner first (`apt-get install curl`,
the uv installer from astral.sh, `uvx -w pytest==8.4.1 pytest ...`, `pip install pytest`). Sandboxes
here never have network at run time; image builds reach the package registries (PyPI, Debian) and no
other host. So `plan_test_dependencies` reads the test scripts and returns an `OfflinePlan`:

* build time (`dockerfile_lines`, appended to the task's Dockerfile; sdists among the downloads are
  built into wheels there, so nothing needs a build backend at test time):
  - Debian packages the tests `apt-get|apt install` (also `apk add`, same names) are installed;
  - the astral.sh uv installer becomes `pip install uv[==version]` (uv is published on PyPI), and
    `$HOME/.local/bin/env`, which that installer writes and test scripts `source`, is created;
  - every Python requirement the tests name (`pip install`, `uv pip install`, `uvx`/`uv tool run`
    tool and `--with`/`--from`, `uv run --with`, `-r requirements.txt` from the tests folder) is
    downloaded into the wheelhouse /opt/pivotrl/wheels; what plain `pip install` lines name is also
    installed into the image's Python (the test's pip then finds it satisfied, fast).
* test time (`rewrite`, `test_env`): the apt/apk lines and the uv installer pipeline become `true`
  (already done at build); `-p/--python X` is dropped from uv/uvx (uv would download that Python from
  GitHub; the image's Python runs the tests); pip and uv then install from the wheelhouse with
  `PIP_NO_INDEX`/`UV_OFFLINE` set, so every other line of the script runs as written.

Python packages the solution itself installs (`pip install ...` in solve.sh) are downloaded into the
wheelhouse as well, and every command of the task runs with pip/uv pointed at it (`command_env`).
Debian packages the solution installs (`apt-get update && apt-get install -y ...`) are installed into
the image at build time, so its apt lines find them installed and succeed offline.

Install lines are read word by word as the shell reads them (`shell_words`): quotes removed,
redirections such as `2>/dev/null` and comments left out.

What still needs a host at test time (`curl`/`wget` of another URL, `git clone`, `pip install
git+https://...`, `npm`/`npx`, `cargo install`, ...) is a `TestsNeedNetworkError` naming the command.
"""

from __future__ import annotations

import dataclasses
import re
import shlex

from pivot_envs.domains.terminal.harbor.task import HarborTaskError

WHEELHOUSE = "/opt/pivotrl/wheels"
OFFLINE_ENV = {
    "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELHOUSE, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "UV_OFFLINE": "1", "UV_NO_INDEX": "1", "UV_FIND_LINKS": WHEELHOUSE, "UV_PYTHON_DOWNLOADS": "never",
    "UV_PYTHON_PREFERENCE": "only-system",
}


# Sandboxes drop the setuid/setgid capabilities, so apt's switch to its `_apt` user fails ("setgroups
# 65534 failed") and `apt-get update` exits 100; run apt as root in images whose solution calls it.
APT_AS_ROOT = "RUN printf 'APT::Sandbox::User \"root\";\\n' > /etc/apt/apt.conf.d/99pivotrl-sandbox"


class TestsNeedNetworkError(HarborTaskError):
    """A task's tests fetch something from a host other than the package registries at test time;
    sandboxes have no network then. The message names the command."""

    __test__ = False  # not a pytest class


@dataclasses.dataclass(frozen=True)
class OfflinePlan:
    """What the tests install (installed at image build) and how their scripts were rewritten."""

    apt_packages: tuple[str, ...] = ()
    python_requirements: tuple[str, ...] = ()
    uv_version: str | None = None  # "" = latest; None = uv not needed
    rewritten: dict[str, str] = dataclasses.field(default_factory=dict)  # tests-bundle path -> new text
    notes: tuple[str, ...] = ()  # one line per rewrite, for the trajectory's record and the README
    # What plain `pip install` lines install: also installed into the image's Python at build time, so
    # the test's own pip finds them satisfied instead of reinstalling on every test run.
    preinstalled: tuple[str, ...] = ()
    # What the solution's own `pip install` / `uv pip install` / `uvx` lines name: downloaded into the
    # wheelhouse too (not installed: the demonstration still installs them), and every command of the
    # task then runs with OFFLINE_ENV so that pip and uv find them there (`command_env`).
    solution_requirements: tuple[str, ...] = ()
    # What the solution's own `apt-get install` lines name (also in `apt_packages`): the image then lets
    # apt run as root without switching to its `_apt` user (`APT_AS_ROOT`), so that those lines work in
    # a sandbox, which has no setuid/setgid capabilities.
    solution_apt_packages: tuple[str, ...] = ()

    @property
    def command_env(self) -> dict[str, str] | None:
        """Environment for every command of the task (agent, replay, verifier): None unless the
        solution installs Python packages."""
        return dict(OFFLINE_ENV) if self.solution_requirements else None

    def with_solution(self, script: str) -> OfflinePlan:
        """This plan plus what the solution `script` installs: Python packages from PyPI (into the
        wheelhouse) and Debian packages (`apt-get install`, installed into the image at build time).

        Why the apt packages: a solution whose first step is `apt-get update && apt-get install -y jq`
        failed offline ("Unable to locate package") and the task was refused. With the packages
        already installed, the step runs unchanged in the sandbox: `apt-get update` only warns
        without network (exit 0) and `apt-get install` finds every package "already the newest
        version" (exit 0), so the demonstration keeps its install step as the author wrote it."""
        reqs: list[str] = []
        apt: list[str] = []
        uses_uv = False
        for m in _APT_RE.finditer(script):
            apt.extend(apt_packages(_split(m.group(2), m.group(0))) or [])
        for m in _PIP_RE.finditer(script):
            reqs.extend(_pip_requirements(_split(m.group(2), m.group(0)), {}, m.group(0)))
        for m in _UVX_RE.finditer(script):
            kind = re.sub(r"\s+", " ", m.group(1))
            uses_uv = True
            if kind != "uv venv":
                reqs.extend(_uv_tool_requirements(kind, _split(m.group(2), m.group(0)), {}, m.group(0)))
        uses_uv = uses_uv or bool(re.search(r"(?<![\w-])uv[ \t]+pip[ \t]", script))
        plan = self
        if apt:
            new_apt = tuple(p for p in dict.fromkeys(apt) if p not in self.apt_packages)
            note = (f"solution: apt packages {' '.join(new_apt)} installed at image build (the solution's apt-get "
                    "lines then find them installed offline)")
            plan = dataclasses.replace(
                plan, apt_packages=self.apt_packages + new_apt, solution_apt_packages=tuple(dict.fromkeys(apt)),
                notes=self.notes + ((note,) if new_apt else ()))
        if not reqs:
            return plan
        return dataclasses.replace(
            plan, python_requirements=tuple(dict.fromkeys(self.python_requirements + tuple(reqs))),
            solution_requirements=tuple(dict.fromkeys(reqs)),
            uv_version=self.uv_version if self.uv_version is not None or not uses_uv else "")

    @property
    def empty(self) -> bool:
        return not (self.apt_packages or self.python_requirements or self.uv_version is not None or self.rewritten)

    @property
    def needs_python(self) -> bool:
        return bool(self.python_requirements) or self.uv_version is not None

    def key(self) -> str:
        """What the image build depends on (part of the image's content hash)."""
        return repr((self.apt_packages, self.python_requirements, self.uv_version, self.preinstalled,
                     self.solution_requirements) + ((self.solution_apt_packages,) if self.solution_apt_packages else ()))

    def dockerfile_lines(self) -> list[str]:
        lines: list[str] = []
        apt = list(self.apt_packages)
        if self.needs_python:
            lines.append('RUN command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || '
                         '(apt-get update && apt-get install -y --no-install-recommends python3 python3-pip '
                         '&& rm -rf /var/lib/apt/lists/*)')
        if apt:
            lines.append("RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                         f"--no-install-recommends {' '.join(shlex.quote(p) for p in apt)} "
                         "&& rm -rf /var/lib/apt/lists/*")
        if self.solution_apt_packages:
            lines.append(APT_AS_ROOT)
        pip = "PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip"
        if self.uv_version is not None:
            spec = f"uv=={self.uv_version}" if self.uv_version else "uv"
            lines.append(f"RUN {pip} install --no-cache-dir {shlex.quote(spec)} && mkdir -p /root/.local/bin "
                         "&& printf 'export PATH=\"$HOME/.local/bin:$PATH\"\\n' > /root/.local/bin/env")
        if self.python_requirements:
            reqs = " ".join(shlex.quote(r) for r in self.python_requirements)
            lines.append(f"RUN mkdir -p {WHEELHOUSE} && {pip} download --no-cache-dir -q -d {WHEELHOUSE} {reqs}")
            # A package published only as an sdist (docopt 0.6.2, ...) would be built at test time, and its
            # build backend (setuptools) is not in the wheelhouse: offline uv then fails with "Failed to
            # download and build". Build those wheels now, while PyPI answers.
            lines.append(f"RUN cd {WHEELHOUSE} && for f in *.tar.gz *.zip; do [ -e \"$f\" ] || continue; "
                         f"{pip} wheel --no-cache-dir -q --no-deps -w . \"$f\" || exit 1; done")
        if self.preinstalled:
            reqs = " ".join(shlex.quote(r) for r in self.preinstalled)
            lines.append(f"RUN {pip} install --no-cache-dir -q --no-index --find-links {WHEELHOUSE} {reqs}")
        return lines


# ----------------------------------------------------------------------------- detection

_SEP = r"(?:^|(?<=[;&|(`\n])|(?<=\bthen)|(?<=\bdo)|(?<=\belse))[ \t]*"
_CMD_TAIL = r"(?:[^;&|\n\\]|\\\n|\\.)*"  # the rest of one simple command (continuations included)
_PREFIX = r"(?:sudo[ \t]+(?:-\S+[ \t]+)*)?(?:[A-Z_]+=\S*[ \t]+)*"
_APT_RE = re.compile(_SEP + _PREFIX + r"(apt-get|apt|apk)[ \t]+(" + _CMD_TAIL + ")", flags=re.MULTILINE)
_UV_INSTALLER_RE = re.compile(
    _SEP + r"(?:curl|wget)[ \t]" + r"[^|;&\n]*?https?://(?:astral\.sh/uv|github\.com/astral-sh/uv/releases)"
    r"(?:/(\d+\.\d+\.\d+))?[^|;&\n]*\|[ \t]*(?:env[ \t]+\S+=\S*[ \t]+)*(?:sh|bash)\b[^;&|\n]*", flags=re.MULTILINE)
_PIP_RE = re.compile(_SEP + _PREFIX + r"((?:uv[ \t]+)?pip3?|python3?(?:\.\d+)?[ \t]+-m[ \t]+pip)[ \t]+install[ \t]+("
                     + _CMD_TAIL + ")", flags=re.MULTILINE)
_UVX_RE = re.compile(_SEP + _PREFIX + r"(uvx|uv[ \t]+tool[ \t]+(?:run|install)|uv[ \t]+run|uv[ \t]+venv)\b("
                     + _CMD_TAIL + ")", flags=re.MULTILINE)
_NETWORK_RES = [
    (re.compile(_SEP + r"((?:curl|wget)\b[^;&|\n]*https?://(?!localhost\b|127\.|0\.0\.0\.0|\[::1\])[^;&|\n)]*)",
                flags=re.MULTILINE), "downloads from another host"),
    (re.compile(_SEP + r"(git[ \t]+(?:clone|fetch|pull|submodule[ \t]+update)\b[^;&|\n]*"
                r"(?:(?:https?|git|ssh)://|git@)[^;&|\n]*)", flags=re.MULTILINE), "fetches a git remote"),
    (re.compile(_SEP + r"((?:npm|pnpm|yarn)[ \t]+(?:install|add|ci|i)\b[^;&|\n]*|npx[ \t][^;&|\n]*)", flags=re.MULTILINE),
     "installs from npm (not mapped onto a build-time registry here)"),
    (re.compile(_SEP + r"((?:cargo|go|gem|conda|mamba|pipx)[ \t]+install\b[^;&|\n]*)", flags=re.MULTILINE),
     "installs from a registry that image builds here do not reach"),
]
_PIP_VALUE_FLAGS = {"-i", "--index-url", "--extra-index-url", "-c", "--constraint", "-t", "--target", "--prefix",
                    "--root", "--python", "-p", "--find-links", "-f", "--cache-dir", "--platform",
                    "--python-version", "--implementation", "--abi", "--only-binary", "--no-binary", "--progress-bar",
                    "--trusted-host", "--src", "--upgrade-strategy", "--config-settings", "-C", "--log",
                    "--timeout", "--retries", "--exists-action", "--report", "--index-strategy",
                    "--keyring-provider", "--prerelease", "--resolution", "--python-platform"}
_UVX_VALUE_FLAGS = {"-w", "--with", "--from", "-p", "--python", "--with-requirements", "--with-editable",
                    "--index", "--index-url", "--extra-index-url", "--directory", "--project", "--env-file",
                    "-C", "--cache-dir", "--python-platform", "--prerelease", "--resolution", "--color",
                    "--seed", "--relocatable", "--prompt"}
_SKIP_APT_WORDS = {"install", "add", "update", "upgrade", "-y", "-q", "-qq", "--yes", "--quiet",
                   "--no-install-recommends", "--no-cache", "--assume-yes", "--fix-missing", "--no-upgrade"}


# Redirection operators as `shlex` (punctuation_chars) returns them; each takes the next word as its target.
_REDIRECTIONS = {"<", ">", ">>", ">|", "<>", "<&", ">&", "&>", "&>>", "<<<"}


def shell_words(text: str) -> list[str]:
    """The arguments of one simple command as bash reads them, for finding package names.

    `shlex.split` alone keeps `2>/dev/null` as a word, so `pip install pytest==8.3.5 2>/dev/null`
    asked PyPI for a package called "2>/dev/null" and the image build failed. Here `shlex` runs with
    `punctuation_chars`, so operators come out as tokens of their own: a redirection (`>`, `2>`,
    `>>`, `2>&1`, `&>`, `<`, `<<<`) is dropped together with its target (and the file-descriptor
    number before it), quotes are removed (`"requests>=2"` stays one word, while an unquoted `a>=1`
    is, as in bash, `a` redirected to `=1`), `#` comments and line continuations are dropped, and
    reading stops at the first control operator (`;`, `&&`, `||`, `|`, `&`, parentheses).
    Raises ValueError for an unclosed quote."""
    lexer = shlex.shlex(text.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # split on blanks and operators only: `-r`, `a==1`, `x.txt` stay whole
    words: list[str] = []
    skip_target = False
    for token in lexer:
        if skip_target:
            skip_target = False
            continue
        if token in _REDIRECTIONS:
            if words and words[-1].isdigit():
                words.pop()  # `2>file`: the 2 is the redirected descriptor, not an argument
            skip_target = True
            continue
        if token and all(c in lexer.punctuation_chars for c in token):
            break  # a control operator ends the simple command
        words.append(token)
    return words


def _split(text: str, what: str) -> list[str]:
    try:
        return shell_words(text)
    except ValueError as e:
        raise HarborTaskError(f"cannot read the arguments of `{what}` ({e})") from None


def apt_packages(words: list[str]) -> list[str] | None:
    """The packages of an `apt-get|apt|apk` command given its arguments after the program name: a list
    for `install`/`add`, [] for `update`/`upgrade`/`clean`/`autoremove` (nothing to install), None for
    anything else (apt-cache, apt-get source, ...: not an install)."""
    if not words or words[0] not in ("install", "add"):
        return [] if words and words[0] in ("update", "upgrade", "clean", "autoremove") else None
    packages, skip_next = [], False
    for w in words[1:]:
        if skip_next or w in _SKIP_APT_WORDS:
            skip_next = False
            continue
        if w in ("-o", "-t", "--target-release"):
            skip_next = True
        elif not w.startswith("-"):
            packages.append(w)
    return packages


def _is_url_requirement(req: str) -> bool:
    return bool(re.match(r"^(git\+|hg\+|svn\+|bzr\+|https?://|file:)", req)) or " @ " in req or "@ http" in req


def _requirement(word: str, command: str) -> str | None:
    if _is_url_requirement(word):
        raise TestsNeedNetworkError(f"`{command.strip()}` installs {word!r} from a URL; sandboxes "
                                    "have no network at test time and only PyPI is reachable when the image is "
                                    "built. Pin a PyPI release instead.")
    if word.startswith((".", "/")) or word.endswith((".whl", ".tar.gz", ".zip")):
        return None  # a local path: nothing to download
    return word


def _requirements_file(path: str, files: dict[str, bytes], command: str) -> list[str]:
    rel = re.sub(r"^(\$TEST_DIR|\$\{TEST_DIR\}|/tests)/", "", path)
    data = files.get(rel)
    if data is None:
        raise HarborTaskError(f"`{command.strip()}` reads {path!r}, which is not in the tests folder; ship it "
                              f"there so its requirements can be installed when the image is built")
    reqs = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = _requirement(line, command)
            if req:
                reqs.append(req)
    return reqs


def _pip_requirements(args: list[str], files: dict[str, bytes], command: str) -> list[str]:
    reqs, i = [], 0
    while i < len(args):
        a = args[i]
        if a in ("-r", "--requirement") and i + 1 < len(args):
            reqs += _requirements_file(args[i + 1], files, command)
            i += 2
            continue
        if a in ("-e", "--editable") and i + 1 < len(args):
            i += 2
            continue
        if a in _PIP_VALUE_FLAGS:
            i += 2
            continue
        if not a.startswith("-"):
            req = _requirement(a, command)
            if req:
                reqs.append(req)
        i += 1
    return reqs


def _uv_tool_requirements(kind: str, args: list[str], files: dict[str, bytes], command: str) -> list[str]:
    reqs, i, tool_seen = [], 0, False
    while i < len(args):
        a = args[i]
        if "=" in a and a.startswith("--") and a.split("=", 1)[0] in _UVX_VALUE_FLAGS:
            a, value = a.split("=", 1)
            args = args[:i] + [a, value] + args[i + 1:]
        if a in ("-w", "--with", "--from") and i + 1 < len(args):
            reqs += [r for r in (_requirement(x.strip(), command) for x in args[i + 1].split(",")) if r]
            if a == "--from":
                tool_seen = True  # the command's name is then not a package
            i += 2
            continue
        if a == "--with-requirements" and i + 1 < len(args):
            reqs += _requirements_file(args[i + 1], files, command)
            i += 2
            continue
        if a in _UVX_VALUE_FLAGS:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        if kind.startswith(("uvx", "uv tool")) and not tool_seen:
            name = a.split("@", 1)
            reqs.append(name[0] if len(name) == 1 or name[1] == "latest" else f"{name[0]}=={name[1]}")
        break  # the tool's own arguments follow
    return reqs


def _drop_python_flag(segment: str) -> tuple[str, bool]:
    new = re.sub(r"[ \t](?:-p|--python)(?:[ \t]+|=)(?:'[^']*'|\"[^\"]*\"|\S+)", "", segment, count=1)
    return new, new != segment


def _as_true(segment: str) -> str:
    """`true` in place of a command, its surrounding whitespace kept."""
    body = segment.strip()
    start = segment.index(body)
    return segment[:start] + "true" + segment[start + len(body):]


def plan_test_dependencies(files: dict[str, bytes], scripts: list[str]) -> OfflinePlan:
    """Read the shell `scripts` (paths inside the tests bundle `files`) and plan their offline run."""
    apt: list[str] = []
    reqs: list[str] = []
    system_pip: list[str] = []
    uv_version: str | None = None
    rewritten: dict[str, str] = {}
    notes: list[str] = []
    for rel in scripts:
        text = files[rel].decode("utf-8", "replace")
        # the nested functions below run within this iteration only (re.sub calls them at once)
        new = text

        def uv_installer(m: re.Match, rel: str = rel) -> str:
            nonlocal uv_version
            uv_version = m.group(1) or (uv_version or "")
            notes.append(f"{rel}: `{m.group(0).strip()}` -> uv{'==' + m.group(1) if m.group(1) else ''} "
                         "installed from PyPI at image build")
            return _as_true(m.group(0))

        new = _UV_INSTALLER_RE.sub(uv_installer, new)

        def apt_line(m: re.Match, rel: str = rel) -> str:
            packages = apt_packages(_split(m.group(2), m.group(0)))
            if packages is None:
                return m.group(0)  # apt-cache / apt-get source ...: left alone
            apt.extend(packages)
            notes.append(f"{rel}: `{m.group(0).strip()}` -> done at image build")
            return _as_true(m.group(0))

        new = _APT_RE.sub(apt_line, new)
        for m in _PIP_RE.finditer(new):
            found = _pip_requirements(_split(m.group(2), m.group(0)), files, m.group(0))
            reqs.extend(found)
            if not m.group(1).startswith("uv"):
                system_pip.extend(found)

        def uv_command(m: re.Match, rel: str = rel) -> str:
            kind = re.sub(r"\s+", " ", m.group(1))
            nonlocal uv_version
            if uv_version is None:
                uv_version = ""  # uv is used, though the script did not install it
            if kind != "uv venv":
                reqs.extend(_uv_tool_requirements(kind, _split(m.group(2), m.group(0)), files, m.group(0)))
            segment, dropped = _drop_python_flag(m.group(0))
            if dropped:
                notes.append(f"{rel}: `{m.group(0).strip()}` -> `{segment.strip()}` (uv would download that Python "
                             "from GitHub; the image's Python runs the tests)")
            return segment

        new = _UVX_RE.sub(uv_command, new)
        for pattern, why in _NETWORK_RES:
            for m in pattern.finditer(new):
                raise TestsNeedNetworkError(f"{rel}: the tests run `{m.group(1).strip()}`, which {why}; sandboxes "
                                            "have no network at test time. Put what it fetches into the task's "
                                            "Dockerfile or tests folder.")
        if new != text:
            rewritten[rel] = new
    return OfflinePlan(tuple(dict.fromkeys(apt)), tuple(dict.fromkeys(reqs)), uv_version, rewritten, tuple(notes),
                       tuple(dict.fromkeys(system_pip)))


def shell_scripts(files: dict[str, bytes], entry: str) -> list[str]:
    """The entry script first, then the other shell scripts of the tests bundle."""
    others = sorted(p for p in files if p != entry and p.endswith(".sh"))
    return [entry] + others
