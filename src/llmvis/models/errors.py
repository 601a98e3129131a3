"""The one error a failed load raises: a one-line reason the user can act on."""


class ModelLoadError(ValueError):
    pass
