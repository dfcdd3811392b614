"""``si``: the Sequence Hub command-line client (the embedded hub comes with the server)."""

from .protocol import VERSION as __version__

__all__ = ["__version__"]
