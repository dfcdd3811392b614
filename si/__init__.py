"""``si``: the Sequence Hub command-line client (the embedded hub comes with the server)."""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Looked up when asked for, so a command that does not need the protocol does not import it.
    if name == "__version__":
        from .protocol import VERSION

        return VERSION
    raise AttributeError(name)
