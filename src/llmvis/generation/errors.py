"""The error a request gets when it cannot run as asked (shown to the user as is)."""


class GenerationError(ValueError):
    pass
