"""The runner: runs one instance per invocation (see ``service.run_instance``)."""
