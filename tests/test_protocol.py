"""The runtime hosts run in the sequence's environment, not the runner's: they cannot import the
protocol module, so they restate the exit codes they use. Here each must match ``ExitCode``."""

from __future__ import annotations

import re

from chalicelib.protocol import ExitCode
from chalicelib.runner.hosts import NODE_HOST, PYTHON_HOST

# What each host calls the codes it uses.
NAMES = {"EXIT_INVALID_MAIN": ExitCode.INVALID_SEQUENCE_PATH, "EXIT_FAILED_ON_START": ExitCode.SEQUENCE_FAILED_ON_START,
         "EXIT_FAILED_DURING_RUN": ExitCode.SEQUENCE_FAILED_DURING_EXECUTION, "EXIT_KILLED": ExitCode.KILLED,
         "EXIT_STOPPED": ExitCode.STOPPED}


def constants(source: str, pattern: str) -> dict[str, int]:
    return {name: int(value) for name, value in re.findall(pattern, source, re.MULTILINE)}


def test_the_python_host_states_the_protocols_exit_codes():
    found = constants(PYTHON_HOST.read_text(), r"^(EXIT_\w+) = (\d+)$")
    assert found == {name: int(code) for name, code in NAMES.items()}


def test_the_node_host_states_the_protocols_exit_codes():
    found = constants(NODE_HOST.read_text(), r"^const (EXIT_\w+) = (\d+);$")
    assert found == {name: int(code) for name, code in NAMES.items()}


def test_every_exit_code_the_hosts_use_is_named():
    for host in (PYTHON_HOST, NODE_HOST):
        literal = re.findall(r"(?:sys\.exit|os\._exit|process\.exit|finish)\((\d+)\)", host.read_text())
        assert literal, host.name  # each host ends with a literal 0 somewhere: the pattern still finds calls
        assert {int(n) for n in literal} <= {ExitCode.SUCCESS, *NAMES.values()}, (host.name, literal)
