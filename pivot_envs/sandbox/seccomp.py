"""A seccomp-BPF deny list for the local sandbox, compiled here with struct packing.

Why hand-written: bubblewrap's `--seccomp FD` takes a compiled classic-BPF program, and the only
Python bindings for libseccomp are not on PyPI under a maintained name. The program is small enough to
assemble and review by hand: about fifty instructions.

What it denies (EPERM unless said otherwise), so that a sandboxed command cannot change the mount
table, reach into other processes, load kernel code or touch raw hardware, even if a capability were
left over by mistake:

* mount API: mount, umount2, pivot_root, open_tree, move_mount, fsopen, fsconfig, fsmount, fspick,
  mount_setattr; and new namespaces (unshare, setns, clone with a CLONE_NEW* flag), which would
  give a process a fresh set of capabilities in a user namespace it owns;
* process access: ptrace, process_vm_readv/writev, kcmp, pidfd_getfd;
* kernel keys and code: keyctl, add_key, request_key, bpf, perf_event_open, init_module,
  finit_module, delete_module, kexec_load, kexec_file_load, userfaultfd;
* raw devices and the machine: iopl, ioperm, mknod/mknodat of block or character devices (FIFOs and
  sockets stay allowed: `mkfifo` works), swapon, swapoff, reboot, acct, quotactl, syslog,
  settimeofday, clock_settime, adjtimex, open_by_handle_at (the "shocker" escape), name_to_handle_at;
* clone3 returns ENOSYS, so that libc falls back to clone, whose flags the filter can read (the
  same choice as Docker's default profile);
* any other ABI than the native one (x86 32-bit `int 0x80`, x32) kills the process: the deny list
  is keyed by native syscall numbers.

Supported: x86_64 and aarch64. `compile_filter()` returns the program as bytes (8 bytes per
instruction: u16 code, u8 jt, u8 jf, u32 k, native byte order), which bwrap reads from a file
descriptor.
"""

from __future__ import annotations

import errno
import platform
import struct

from pivot_envs.errors import SandboxUnavailableError

# classic BPF opcodes
_LD_W_ABS = 0x20
_ALU_AND_K = 0x54
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

# struct seccomp_data offsets: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64 each)
_OFF_NR = 0
_OFF_ARCH = 4


def _arg_low(i: int) -> int:
    return 16 + 8 * i  # low 32 bits of args[i] (little-endian)


_CLONE_NEW_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_S_IFMT, _S_IFCHR, _S_IFBLK = 0o170000, 0o020000, 0o060000

# name -> number, per architecture. Names absent from an architecture simply are not listed there.
_X86_64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 272, "setns": 308,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
    "userfaultfd": 323, "iopl": 172, "ioperm": 173, "swapon": 167, "swapoff": 168, "reboot": 169,
    "acct": 163, "quotactl": 179, "syslog": 103, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
    "open_by_handle_at": 304, "name_to_handle_at": 303,
    # argument-checked / special
    "clone": 56, "clone3": 435, "mknod": 133, "mknodat": 259,
}
_AARCH64 = {
    "mount": 40, "umount2": 39, "pivot_root": 41, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 97, "setns": 268,
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438,
    "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
    "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294,
    "userfaultfd": 282, "swapon": 224, "swapoff": 225, "reboot": 142,
    "acct": 89, "quotactl": 60, "syslog": 116, "settimeofday": 170, "clock_settime": 112, "adjtimex": 171,
    "open_by_handle_at": 265, "name_to_handle_at": 264,
    "clone": 220, "clone3": 435, "mknodat": 33,
}
_ARCHES = {
    # machine: (AUDIT_ARCH_*, syscall table, first number of a foreign ABI sharing the arch value)
    "x86_64": (0xC000003E, _X86_64, 0x40000000),  # x32 syscalls have bit 30 set
    "aarch64": (0xC00000B7, _AARCH64, None),
}
_SPECIAL = {"clone", "clone3", "mknod", "mknodat"}

#: Names of the syscalls the filter refuses outright (documentation and tests).
DENIED = tuple(sorted(set(_X86_64) - _SPECIAL))


def _ins(code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> tuple:
    return (code, jt, jf, k)


def compile_filter(machine: str | None = None) -> bytes:
    """The BPF program for `machine` (default: this one). Raises SandboxUnavailableError on an
    architecture without a table (the local backend then refuses to start rather than run unfiltered)."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise SandboxUnavailableError(
            f"no seccomp syscall table for {machine!r} (have {sorted(_ARCHES)}); add one to "
            "pivot_envs/sandbox/seccomp.py or use the docker backend")
    audit_arch, table, foreign_from = _ARCHES[machine]
    prog: list[tuple] = [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ_K, audit_arch, 1, 0),
        _ins(_RET_K, _RET_KILL_PROCESS),
        _ins(_LD_W_ABS, _OFF_NR),
    ]
    if foreign_from is not None:
        prog += [_ins(_JGE_K, foreign_from, "kill", 0)]
    for name in sorted(set(table) - _SPECIAL, key=table.__getitem__):
        prog.append(_ins(_JEQ_K, table[name], "eperm", 0))
    prog.append(_ins(_JEQ_K, table["clone"], "clone", 0))
    prog.append(_ins(_JEQ_K, table["clone3"], "enosys", 0))
    prog.append(_ins(_JEQ_K, table["mknodat"], "mknodat", 0))
    if "mknod" in table:
        prog.append(_ins(_JEQ_K, table["mknod"], "mknod", 0))
    prog.append(_ins(_RET_K, _RET_ALLOW))  # no rule matched
    # Argument checks, then the shared returns: classic BPF only jumps forward.
    labels: dict[str, int] = {}

    def label(name: str) -> None:
        labels[name] = len(prog)

    label("clone")
    prog += [_ins(_LD_W_ABS, _arg_low(0)), _ins(_JSET_K, _CLONE_NEW_FLAGS, "eperm", "allow")]
    for name, mode_arg in (("mknodat", 2), ("mknod", 1)):
        label(name)
        prog += [_ins(_LD_W_ABS, _arg_low(mode_arg)), _ins(_ALU_AND_K, _S_IFMT),
                 _ins(_JEQ_K, _S_IFCHR, "eperm", 0), _ins(_JEQ_K, _S_IFBLK, "eperm", "allow")]
    label("allow")
    prog.append(_ins(_RET_K, _RET_ALLOW))
    label("eperm")
    prog.append(_ins(_RET_K, _RET_ERRNO | errno.EPERM))
    label("enosys")
    prog.append(_ins(_RET_K, _RET_ERRNO | errno.ENOSYS))
    label("kill")
    prog.append(_ins(_RET_K, _RET_KILL_PROCESS))
    out = bytearray()
    for pc, (code, jt, jf, k) in enumerate(prog):
        offsets = []
        for target in (jt, jf):
            if isinstance(target, str):
                delta = labels[target] - pc - 1
                if not 0 <= delta <= 255:
                    raise AssertionError(f"seccomp jump to {target} out of range ({delta})")
                offsets.append(delta)
            else:
                offsets.append(target)
        out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
    return bytes(out)
