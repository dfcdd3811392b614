"""Sequence Hub's server: the domain services, AWS adapters, invoker and runner deployed with every
Lambda, the protocol it shares with the client, and the embedded hub (never imported on Lambda)."""

from .protocol import VERSION as __version__

__all__ = ["__version__"]
