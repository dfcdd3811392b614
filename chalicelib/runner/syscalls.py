"""The system calls a sandboxed instance may not make.

Most kernel privilege escalations start from a surface an unprivileged process can reach: a new
user namespace (in which it holds every capability: netfilter, raw sockets, mounts), io_uring,
bpf, perf events, userfaultfd, the keyring. Docker's default seccomp profile and Flatpak's filter
deny these; so does the embedded hub's sandbox. libseccomp builds the filter (``pyseccomp``, its
Python bindings, over the system's ``libseccomp.so.2``) and bubblewrap installs it (``--seccomp``)
just before the instance's first program runs, so it binds everything the instance starts.

A denied call fails with ``EPERM`` as it would for a process without the privilege, except
``clone3``, whose flags a filter cannot read: it answers ``ENOSYS``, and the C libraries fall back
to ``clone``, whose flags it can.
"""

from __future__ import annotations

import errno
import functools
import tempfile
from typing import Any

# Each denied outright (not every one exists on every architecture: those missing are skipped).
DENIED = (
    # namespaces and mounts: no new user namespace, no joining another, nothing mounted
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # the kernel keyring (keys would outlive the instance, readable by the next user of its uid)
    "add_key", "request_key", "keyctl",
    # the surfaces behind most recent escalations
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd",
    # the machine itself
    "init_module", "finit_module", "delete_module", "create_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "_sysctl",
    "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex", "ioperm", "iopl",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "nfsservctl", "uselib", "ustat",
    "vm86", "vm86old", "fanotify_init",
)
# clone() with any of these flags makes a new namespace (sched.h).
NAMESPACE_FLAGS = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
                   "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
                   "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080}


class Unavailable(RuntimeError):
    """libseccomp cannot be used here (the message says why)."""


def _seccomp() -> Any:
    try:
        import pyseccomp  # type: ignore[import-untyped]  # it ships no types
    except (ImportError, OSError) as exc:  # the bindings load libseccomp.so.2 when imported
        raise Unavailable(f"libseccomp is not available ({exc}): apt install libseccomp2") from None
    return pyseccomp


@functools.cache
def program() -> bytes:
    """The compiled filter (classic BPF, as ``bwrap --seccomp`` reads it) for this machine."""
    seccomp = _seccomp()
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):  # not a system call of this architecture
            continue
    for flag in NAMESPACE_FLAGS.values():
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as fh:  # libseccomp exports to a file descriptor
        rules.export_bpf(fh)
        fh.seek(0)
        return fh.read()
