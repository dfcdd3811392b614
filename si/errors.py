"""The one error type the CLI shows to users: one line on stderr, exit code 1."""


class SiError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
