"""Typed errors. Each message says what was wrong and what to do about it.

Model output that is wrong is never an exception: it becomes a `Verdict` with reward 0.
Infrastructure failure inside a step is never an exception either: it becomes a masked verdict
(`failure_kind` set). These exceptions are for bad *input* (data, arguments, configuration) and for
infrastructure that cannot even start.
"""


class PivotError(Exception):
    """Base class of every error raised by pivotrl."""


class TrajectoryError(PivotError, ValueError):
    """A trajectory record is malformed. The message names the source line and the field."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None, source: str | None = None):
        where = []
        if source:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.line = line
        self.field = field
        self.source = source


class TurnOutOfRangeError(PivotError, IndexError):
    """`reset_to_turn` / `options["turn"]` names a turn the trajectory does not have."""


class UnknownTrajectoryError(PivotError, KeyError):
    """`options["trajectory"]` names no loaded trajectory."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class SandboxError(PivotError, RuntimeError):
    """The sandbox infrastructure failed (daemon down, image missing, mount failed)."""


class SandboxUnavailableError(SandboxError):
    """A sandbox backend cannot run on this machine (no Docker daemon, no bubblewrap)."""


class SandboxLostError(SandboxError):
    """A sandbox was lost to something outside the commands run in it: killed from outside (a
    `docker kill`, a signal to its bwrap process), or it could not be started. Never the fault of
    the action being judged: its verdict is masked (infrastructure), not a wrong answer."""


class ImageNotFoundError(SandboxError):
    """A sandbox image is missing. The message says which command builds it."""


class BackendRequiredError(PivotError, ValueError):
    """The data has no executable backend and the requested mode or verifier needs one (e.g.
    `verifier="execution"` on backend-free tool-use trajectories). The message names the trajectory
    and what works instead."""


class UnknownVerifierError(PivotError, ValueError):
    """`verifier=` names no verifier of the env's domain. The message lists the domain's verifiers."""


class DomainRegistrationError(PivotError, TypeError):
    """A domain declaration is unusable: a package or `pivotrl.domains` entry point without an `EnvSpec`,
    one that does not import, or one whose id or domain is taken. The message names it."""


class EnvStateError(PivotError, RuntimeError):
    """An env method was called in the wrong order (e.g. `step` before `reset`)."""


class ReplayError(PivotError, RuntimeError):
    """Replaying a demonstration's actions failed in a way that makes the state unusable
    (e.g. the setup script exited non-zero). Divergent tool outputs are reported, not raised."""
