"""``si``: the Sequence Hub command-line client and the embedded local hub."""

from chalicelib.protocol import VERSION as __version__  # noqa: F401
