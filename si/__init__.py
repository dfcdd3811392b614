"""``si``: the Sequence Hub command-line client and the embedded local hub."""

from .protocol import VERSION as __version__  # noqa: F401
