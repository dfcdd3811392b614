"""Sequence Hub: the domain services, AWS adapters, invoker and runner deployed with every Lambda."""

from .protocol import VERSION as __version__  # noqa: F401
