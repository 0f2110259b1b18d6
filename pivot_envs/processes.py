"""Commands that leave processes running after they return (a server started in the background).

A sandbox snapshot freezes files, not processes: the state after `setsid python server.py &` restored
from a snapshot has the server's files and no server, so the task's test (which talks to the server)
fails there although it passed live. Such commands are found through the ordinary exec interface:
`watched(cmd)` runs the command as a child of a small bash wrapper that lists the sandbox's processes
(from /proc; every sandbox has its own PID namespace) before and after it, and `split_watched` takes
the listing off the output again, so the command's output, exit status and effects are what they
would have been. A process is "left running" when it exists after the command returned, did not
exist before it and is not a zombie. The listing is bash and coreutils' `sleep` (no `ps`: slim images lack procps).

Who uses it: the recorder (`record_commands`, so converted and recorded trajectories carry the answer
in `task["background_processes"]`) and `SandboxedEnv` (trajectories without that field are checked
while their states are first built; states after such a turn are then restored by replaying the
demonstration live, never from a snapshot: see `sandboxed_env.py`).
"""

from __future__ import annotations

import dataclasses
import shlex
import weakref

from pivot_envs.sandbox import SandboxBackend
from pivot_envs.sandbox.base import ExecResult

MARKER = "__pivotrl_processes_left_running__"
# `__pivotrl_ps EXCLUDE [pids]` lists the processes not in EXCLUDE (pids, space separated), one
# "pid<TAB>command line" per line (or only the pids). Never listed: the listing shell's ancestors (the
# exec machinery), zombies, and the children of processes in EXCLUDE or among those ancestors (the
# backend's output limiters, which may start after the first listing), except the children of PID 1:
# orphans are re-parented there, and a command's background server is one.
_LISTING = r"""__pivotrl_stat() {  # sets st (state) and pp (parent pid) of process $1; fails when it is gone
  local s r
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
  r=${s##*) }; st=${r%% *}; r=${r#* }; pp=${r%% *}; comm=${s#*(}; comm=${comm%)*}
}
__pivotrl_ps() {
  local p q st pp comm a i anc=" "
  q=$$
  while [ "${q:-0}" -gt 0 ] && [ "${#anc}" -lt 4000 ]; do
    anc+="$q "; __pivotrl_stat "$q" || break; q=$pp
  done
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    # the "before" listing is every process (its children are then machinery, not the command's)
    if [ "$2" = pids ]; then printf '%s ' "$p"; continue; fi
    case " $1 $BASHPID $anc" in *" $p "*) continue ;; esac
    __pivotrl_stat "$p" || continue
    [ "$st" = Z ] && continue
    [ "$pp" != 1 ] && case " $1 $anc" in *" $pp "*) continue ;; esac
    # a process caught inside execve has an empty cmdline for a moment: look again briefly
    for ((i = 0; i < 20; i++)); do  # at most 20 x 10 ms
      a=()
      { mapfile -d '' -t a < "/proc/$p/cmdline"; } 2>/dev/null
      [ ${#a[@]} -gt 0 ] && break
      [ -e "/proc/$p" ] && sleep 0.01 2>/dev/null || break
    done
    [ ${#a[@]} -gt 0 ] || a=("[$comm]")
    a="${a[*]}"
    printf '%s\t%s\n' "$p" "${a//$'\n'/ }"
  done
}
"""


def watched(cmd: str) -> str:
    """`cmd` wrapped so that the processes it leaves running are listed after its output."""
    return (f"{_LISTING}__pivotrl_before=$(__pivotrl_ps '' pids)\n"
            f"bash -c {shlex.quote(cmd)}\n__pivotrl_rc=$?\n"
            f"printf '\\n%s\\n' {MARKER}\n__pivotrl_ps \"$__pivotrl_before\"\nexit $__pivotrl_rc\n")


def split_watched(res: ExecResult) -> tuple[ExecResult, tuple[str, ...] | None]:
    """The command's own result and the command lines of the processes it left running (None when the
    listing did not come back: the command timed out or its output was truncated)."""
    cut = res.stdout.rfind(f"\n{MARKER}\n")
    if cut < 0 or res.timed_out:
        return res, None
    listing = res.stdout[cut + len(MARKER) + 2:]
    left = tuple(line.split("\t", 1)[-1] for line in listing.splitlines() if line.strip())
    return dataclasses.replace(res, stdout=res.stdout[:cut]), left


_PROBED: weakref.WeakKeyDictionary[SandboxBackend, bool] = weakref.WeakKeyDictionary()


def keeps_processes(backend: SandboxBackend) -> bool:
    """Does a process started by one exec still run during the next one? Docker: yes (the container
    lives on). Local: no (each exec has its own PID namespace, torn down when the command returns), so
    a state that needs a running process cannot exist there at all. Asked of the backend's
    capabilities when they declare `keeps_processes`, else found out once per backend object: a
    background `sleep` started by one exec, looked for by the next."""
    declared = getattr(getattr(backend, "capabilities", None), "keeps_processes", None)
    if declared is not None:
        return bool(declared)
    if backend not in _PROBED:
        with backend.create(None) as box:
            pid = box.exec("setsid sleep 27.182 >/dev/null 2>&1 & echo $!", timeout=30).stdout.strip()
            alive = box.exec(f"grep -qa 27.182 /proc/{pid}/cmdline", timeout=30).ok if pid.isdigit() else False
        _PROBED[backend] = alive
    return _PROBED[backend]


def describe(turns: dict[int, tuple[str, ...]]) -> str:
    """'turn 3 (python3 server.py), turn 5 (...)' for messages."""
    return ", ".join(f"turn {k} ({'; '.join(p[:80] for p in procs[:3])})" for k, procs in sorted(turns.items()))


__all__ = ["MARKER", "describe", "keeps_processes", "split_watched", "watched"]
