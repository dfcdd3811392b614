"""Domain errors. ``app.py`` maps each to its HTTP status; the message is shown to the user."""


class HubError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(HubError):
    status = 400


class NotFound(HubError):
    status = 404


class NotAllowed(HubError):
    status = 405


class Conflict(HubError):
    status = 409


class TooLarge(HubError):
    status = 413


class InvalidPackage(HubError):
    status = 422



class TooMany(HubError):
    status = 429


class UnsupportedType(HubError):
    status = 415


class Busy(HubError):
    status = 503
