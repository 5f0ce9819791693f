"""Domain errors: core raises meaning, the front doors choose how to show it."""


class DomainError(Exception):
    """A failure the caller can act on, with a stable machine-readable code."""

    code = "error"
    # True when the work done before raising must still be committed (e.g. a revocation).
    commit_anyway = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Forbidden(DomainError):
    code = "forbidden"


class Unauthorized(DomainError):
    code = "unauthorized"


class InvalidInput(DomainError):
    code = "invalid_input"


class Unavailable(DomainError):
    code = "unavailable"
