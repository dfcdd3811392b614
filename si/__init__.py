"""``si``: the Sequence Hub command-line client and the embedded local hub."""

__version__ = "0.1.0"
