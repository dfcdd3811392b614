"""Runtime hosts: small programs, one per language, that load a sequence and speak the pipe protocol.

The protocol (file descriptors named in ``SEQHUB_FD_*`` environment variables):
  output   host → runner  the sequence's output bytes, exactly as STH writes them
  log      host → runner  JSON lines {"ts", "level", "from", "msg"}
  events   host → runner  JSON lines {"type": "event"|"health"|"keepalive", ...}
  control  runner → host  JSON lines {"type": "stop"|"kill"|"event", ...}
  input    runner → host  a "Content-Type: <type>\\r\\n\\r\\n" preamble, then the input bytes
stdin, stdout and stderr are the child's own. ``SEQHUB_START`` names a JSON file with
{"main", "args", "config", "instanceId"}. Exit codes follow STH: 21 bad main, 22 failed on start,
23 failed during execution, 137 killed, 138 stopped.
"""

from pathlib import Path

HOSTS_DIR = Path(__file__).resolve().parent
PYTHON_HOST = HOSTS_DIR / "python_host.py"
NODE_HOST = HOSTS_DIR / "node_host.js"

EXIT_INVALID_MAIN = 21
EXIT_FAILED_ON_START = 22
EXIT_FAILED_DURING_RUN = 23
EXIT_KILLED = 137
EXIT_STOPPED = 138
