"""Executing tool calls on BFCL's multi-turn backends (GorillaFileSystem, MessageAPI, TravelAPI, ...).

Two layers:

- Pure functions (`instantiate`, `execute_call`, `fingerprint`) that work on live backend instances.
  The converter uses them in-process on the (trusted) ground truth.
- `BackendWorker`: a child process that runs those functions for the env and the verifier, because
  a model-chosen call can run forever (e.g. `power(base=10, exponent=10**12)` on MathAPI) and a Python
  thread cannot be killed. Each request carries the *pickled state* in and returns the new pickled
  state, so the worker is stateless: when a call exceeds its deadline the worker is killed and a fresh
  one is started on the next request, and nothing the killed worker held is needed again. States live
  in the parent as immutable bytes, which makes a warm reset a dictionary lookup.

Facts about BFCL's own executor that this re-implements (see bfcl_eval/eval_checker/multi_turn_eval):
an instance per involved class, `_load_scenario(deepcopy(initial_config[cls]), long_context=...)` for
every class except the stateless MathAPI; the instances persist across the turns of one entry; a call's
return value is the tool output (strings as is, dicts as JSON, anything else `str()`), and an exception
is the output `"Error during execution: <message>"`. The state checker compares the instances' public
attributes (`vars()` without `_`-prefixed names) with `==`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import math
import os
import pickle
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pivot_envs.errors import SandboxError, SandboxUnavailableError

log = logging.getLogger(__name__)

_FUNC_SOURCE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"

# class name -> module (inside bfcl_eval) that defines it; the multi-turn suite uses these eight.
BFCL_CLASS_MODULES: dict[str, str] = {
    "GorillaFileSystem": f"{_FUNC_SOURCE}.gorilla_file_system",
    "MathAPI": f"{_FUNC_SOURCE}.math_api",
    "MessageAPI": f"{_FUNC_SOURCE}.message_api",
    "TwitterAPI": f"{_FUNC_SOURCE}.posting_api",
    "TicketAPI": f"{_FUNC_SOURCE}.ticket_api",
    "TradingBot": f"{_FUNC_SOURCE}.trading_bot",
    "TravelAPI": f"{_FUNC_SOURCE}.travel_booking",
    "VehicleControlAPI": f"{_FUNC_SOURCE}.vehicle_control",
}
STATELESS_CLASSES = frozenset({"MathAPI"})  # BFCL never calls _load_scenario on these
ERROR_PREFIX = "Error during execution: "

Call = tuple[str, dict[str, Any]]  # (function name, keyword arguments)


def bfcl_root() -> Path:
    """Folder of the installed `bfcl-eval` package (found without importing it)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SandboxUnavailableError(
            "the tool-use domain needs the BFCL data package: pip install --no-deps bfcl-eval==2026.3.23")
    return Path(next(iter(spec.submodule_search_locations)))


def load_class(name: str, extra_backends: dict[str, str] | None = None) -> type:
    """The backend class `name`: one of BFCL's, or from `extra_backends` ({class name: path to a .py file})."""
    if extra_backends and name in extra_backends:
        path = Path(extra_backends[name])
        mod_name = f"_pivot_tooluse_extra_{path.stem}"
        module = sys.modules.get(mod_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise SandboxError(f"cannot load backend module {str(path)!r} for class {name!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        return getattr(module, name)
    if name not in BFCL_CLASS_MODULES:
        raise SandboxError(f"unknown backend class {name!r}; known: {sorted(BFCL_CLASS_MODULES)} "
                           "(or pass extra_backends={name: path})")
    return getattr(importlib.import_module(BFCL_CLASS_MODULES[name]), name)


def instantiate(involved_classes: list[str], initial_config: dict, long_context: bool,
                extra_backends: dict[str, str] | None = None) -> dict[str, Any]:
    """Fresh instances of the involved classes, loaded with a deep copy of their initial config."""
    instances: dict[str, Any] = {}
    for cls_name in involved_classes:
        inst = load_class(cls_name, extra_backends)()
        if cls_name not in STATELESS_CLASSES:
            inst._load_scenario(copy.deepcopy(initial_config.get(cls_name, {})), long_context=long_context)
        instances[cls_name] = inst
    return instances


def public_methods(instances: dict[str, Any]) -> dict[str, Any]:
    """Callable tool name -> bound method, over all instances (later classes win a name clash, as in BFCL)."""
    out = {}
    for inst in instances.values():
        for name, meth in inspect.getmembers(inst, predicate=inspect.ismethod):
            if not name.startswith("_"):
                out[name] = meth
    return out


def format_output(value: Any) -> str:
    """A return value as the tool message text (BFCL's convention)."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def execute_call(methods: dict[str, Any], name: str, kwargs: dict[str, Any],
                 allowed: set[str] | None = None) -> str:
    """Run one call by name with keyword arguments; never `eval`. Errors are outputs, not exceptions."""
    if allowed is not None and name not in allowed:
        return f"{ERROR_PREFIX}function {name!r} is not available"
    meth = methods.get(name)
    if meth is None:
        return f"{ERROR_PREFIX}no such function {name!r}"
    if not isinstance(kwargs, dict):
        return f"{ERROR_PREFIX}arguments of {name!r} must be an object"
    try:
        return format_output(meth(**kwargs))
    except Exception as e:  # noqa: BLE001 - an exception in the backend is the call's output
        return f"{ERROR_PREFIX}{e}"


# ----------------------------------------------------------------------------- state fingerprint

def _encode(value: Any, stack: tuple[int, ...]) -> Any:
    """JSON-able canonical form of a backend value. Objects become their public attributes; an
    attribute pointing back to an enclosing object (Directory.parent) is dropped, which is what the
    backends' own `__eq__` does."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"__datetime__": value.isoformat()}
    if id(value) in stack:
        return None
    stack = stack + (id(value),)
    if isinstance(value, dict):
        return {str(k): _encode(v, stack) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, stack) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_encode(v, stack) for v in value]
        return {"__set__": sorted(items, key=lambda x: json.dumps(x, sort_keys=True))}
    if hasattr(value, "__dict__"):
        attrs = {k: v for k, v in vars(value).items() if not k.startswith("_") and id(v) not in stack}
        return {"__class__": type(value).__name__, **{k: _encode(v, stack) for k, v in attrs.items()}}
    return repr(value)


def fingerprint(instances: dict[str, Any]) -> dict[str, str]:
    """Per `Class.attribute` hash of the instances' public attributes (BFCL's state-check scope)."""
    out = {}
    for cls_name, inst in instances.items():
        for attr, val in vars(inst).items():
            if attr.startswith("_"):
                continue
            blob = json.dumps(_encode(val, (id(inst),)), sort_keys=True, ensure_ascii=False)
            out[f"{cls_name}.{attr}"] = hashlib.sha256(blob.encode()).hexdigest()[:20]
    return out


def state_diff(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Names of the `Class.attribute`s whose fingerprints differ."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# ----------------------------------------------------------------------------- worker protocol

@dataclasses.dataclass(frozen=True)
class Spec:
    """What a fresh state is built from."""

    involved_classes: tuple[str, ...]
    initial_config_json: str  # JSON text (key order kept: it is the backends' iteration order), hashable
    long_context: bool

    @classmethod
    def of(cls, task: dict) -> Spec:
        return cls(tuple(task["involved_classes"]), json.dumps(task["initial_config"]),
                   bool(task.get("long_context", False)))


@dataclasses.dataclass
class RunResult:
    """The outcome of running calls on a state: new pickled state, one output per call, fingerprint."""

    blob: bytes
    outputs: list[str]
    fingerprint: dict[str, str]


def _run(blob: bytes | None, spec: Spec | None, steps: list[list[Call]], allowed: list[str] | None,
         extra: dict[str, str] | None, keep_blobs: bool) -> list[RunResult] | RunResult:
    if blob is not None:
        instances = pickle.loads(blob)
    else:
        assert spec is not None, "need a pickled state or a Spec"
        instances = instantiate(list(spec.involved_classes), json.loads(spec.initial_config_json),
                                spec.long_context, extra)
    methods = public_methods(instances)
    allowed_set = set(allowed) if allowed is not None else None
    results = []
    for step in steps:
        outputs = [execute_call(methods, name, kwargs, allowed_set) for name, kwargs in step]
        if keep_blobs:
            results.append(RunResult(pickle.dumps(instances, protocol=pickle.HIGHEST_PROTOCOL), outputs,
                                     fingerprint(instances)))
        else:
            results.append(RunResult(b"", outputs, {}))
    if keep_blobs:
        return results
    flat = [o for r in results for o in r.outputs]
    return RunResult(pickle.dumps(instances, protocol=pickle.HIGHEST_PROTOCOL), flat, fingerprint(instances))


def _worker_main(conn: Any, extra: dict[str, str] | None, memory_limit_bytes: int | None) -> None:
    """Child process loop: (op, payload) in, ("ok", result) or ("error", text) out."""
    if memory_limit_bytes:
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
        except (ImportError, ValueError, OSError):
            pass
    for name in extra or {}:  # pickled states refer to these modules: load them before any unpickling
        load_class(name, extra)
    while True:
        try:
            op, payload = conn.recv()
        except (EOFError, OSError):
            return
        if op == "stop":
            return
        result: object
        try:
            if op == "replay":  # -> one RunResult per step (a state after each step)
                result = _run(payload["blob"], payload["spec"], payload["steps"], payload.get("allowed"), extra, True)
            elif op == "run":  # -> one RunResult after all calls
                result = _run(payload["blob"], payload["spec"], [payload["calls"]], payload.get("allowed"), extra, False)
            elif op == "ping":
                result = "pong"
            else:
                raise ValueError(f"unknown worker op {op!r}")
            conn.send(("ok", result))
        except BaseException as e:  # noqa: BLE001 - report, keep serving
            conn.send(("error", f"{type(e).__name__}: {e}"))


class WorkerTimeout(SandboxError):
    """A request did not finish before its deadline; the worker was killed (the next request starts a new one)."""


class WorkerCrashed(SandboxError):
    """The worker process died or failed to answer; it will be restarted on the next request."""


class BackendWorker:
    """A child process that executes backend calls (see module docstring). Thread-safe; restarts
    itself after a timeout or crash. `close()` is idempotent.

    Arguments:
        timeout_s: deadline per request (a replay of many steps gets `timeout_s * (1 + steps/10)`).
        extra_backends: {class name: .py path} for classes beyond BFCL's (tests, custom domains).
        memory_limit_bytes: address-space limit of the worker (RLIMIT_AS).
    """

    def __init__(self, timeout_s: float = 10.0, extra_backends: dict[str, str] | None = None,
                 memory_limit_bytes: int | None = 8 << 30):
        self.timeout_s = timeout_s
        self.extra_backends = dict(extra_backends or {})
        self.memory_limit_bytes = memory_limit_bytes
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()
        self.restarts = 0
        self.generation = 0

    def _start(self) -> None:
        # A plain child interpreter (not multiprocessing's spawn/fork): fork is unsafe in a parent with
        # threads (torch, tokenizers) and spawn re-imports the caller's __main__, which breaks scripts
        # without an `if __name__ == "__main__"` guard. Messages are pickled over a socketpair.
        parent_sock, child_sock = socket.socketpair()
        cmd = [sys.executable, "-m", "pivot_envs.domains.tooluse.backends", "--fd", str(child_sock.fileno()),
               "--extra", json.dumps(self.extra_backends), "--memory-limit", str(self.memory_limit_bytes or 0)]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONHASHSEED"] = "0"  # set iteration order, hence some outputs, reproducible across restarts
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = subprocess.Popen(cmd, pass_fds=(child_sock.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            child_sock.close()
        self._proc, self._conn = proc, Connection(parent_sock.detach())
        self.generation += 1

    def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def request(self, op: str, payload: Any = None, timeout_s: float | None = None) -> Any:
        """Send one request; raise WorkerTimeout / WorkerCrashed (worker killed) or SandboxError."""
        deadline = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if not self._alive():
                if self._proc is not None:
                    self.restarts += 1
                    self._kill()
                self._start()
            try:
                self._conn.send((op, payload))
                if not self._conn.poll(deadline):
                    self.restarts += 1
                    self._kill()
                    raise WorkerTimeout(f"backend call did not return within {deadline:.1f} s; the worker "
                                        "was killed and will restart")
                status, result = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as e:
                self.restarts += 1
                self._kill()
                raise WorkerCrashed(f"backend worker died ({type(e).__name__}: {e}); it will restart") from None
        if status != "ok":
            raise SandboxError(f"backend worker failed: {result}")
        return result

    def replay(self, blob: bytes | None, spec: Spec, steps: list[list[Call]], allowed: list[str] | None = None
               ) -> list[RunResult]:
        """Run `steps` in order from `blob` (or a fresh state from `spec`); a state after each step."""
        return self.request("replay", {"blob": blob, "spec": spec, "steps": steps, "allowed": allowed},
                            self.timeout_s * (1 + len(steps) / 10))

    def run(self, blob: bytes | None, spec: Spec, calls: list[Call], allowed: list[str] | None = None) -> RunResult:
        """Run `calls` in order on a copy of `blob`; the state after them."""
        return self.request("run", {"blob": blob, "spec": spec, "calls": calls, "allowed": allowed})

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._alive():
                try:
                    self._conn.send(("stop", None))
                    self._proc.wait(1)
                except (OSError, BrokenPipeError, subprocess.TimeoutExpired):
                    pass
            self._kill()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: modules may already be gone
            self.close()



def _main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process (`python -m pivot_envs.domains.tooluse.backends --fd N`)."""
    import argparse

    ap = argparse.ArgumentParser(description="pivotrl tool-use backend worker (started by BackendWorker)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--extra", default="{}")
    ap.add_argument("--memory-limit", type=int, default=0)
    a = ap.parse_args(argv)
    # run the importable module's loop, not __main__'s, so results pickle as backends.RunResult
    from pivot_envs.domains.tooluse import backends as importable  # noqa: PLW0406 - on purpose, see above

    importable._worker_main(Connection(a.fd), json.loads(a.extra) or None, a.memory_limit or None)


if __name__ == "__main__":
    _main()
