"""The command groups of ``si``, one module each, loaded when a command needs them."""
