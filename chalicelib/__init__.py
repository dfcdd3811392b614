"""Sequence Hub: the domain services, AWS adapters, invoker and runner deployed with every Lambda."""

__version__ = "0.1.0"
