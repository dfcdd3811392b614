"""Runtime hosts: small programs, one per language, that load a sequence and speak the pipe protocol.

The protocol (file descriptors named in ``SEQHUB_FD_*`` environment variables):
  output   host → runner  the sequence's output bytes, exactly as STH writes them
  log      host → runner  JSON lines {"ts", "level", "from", "msg"}
  events   host → runner  JSON lines {"type": "event"|"health"|"keepalive", ...}
  control  runner → host  JSON lines {"type": "stop"|"kill"|"event", ...}
  input    runner → host  a "Content-Type: <type>\\r\\n\\r\\n" preamble, then the input bytes
stdin, stdout and stderr are the child's own. ``SEQHUB_START`` names a JSON file with
{"main", "args", "config", "instanceId"}. Exit codes are ``protocol.ExitCode``'s (Scramjet's): the
hosts restate the ones they use, since they run in the sequence's environment, not the runner's
(``tests/test_protocol.py`` checks them).
"""

from pathlib import Path

HOSTS_DIR = Path(__file__).resolve().parent
PYTHON_HOST = HOSTS_DIR / "python_host.py"
NODE_HOST = HOSTS_DIR / "node_host.js"
