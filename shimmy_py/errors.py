"""The exceptions shimmy_py raises; each message names the cause and the file."""


class ShimmyError(Exception):
    """Base class of every error raised by shimmy_py."""


class GGUFError(ShimmyError, ValueError):
    """A GGUF file is missing, malformed or truncated."""


class NativeError(ShimmyError, RuntimeError):
    """libllama is missing, of another version, or a native call failed."""


class GenerationError(ShimmyError, ValueError):
    """A generation request cannot be served as asked (bad prompt or limits)."""


class PlacementError(ShimmyError, ValueError):
    """A placement request is invalid or cannot fit."""


class NotFound(ShimmyError, LookupError):
    """A model (or another named thing) that does not exist."""


class Unavailable(ShimmyError):
    """Cannot be done now, but may be later: every model is busy, there is no
    room to load another, the model is loading or restarting. `retry_after`:
    seconds worth waiting (None: waiting alone will not help)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BrokenModel(ShimmyError):
    """A model that exists but cannot be used: its file is not a GGUF llama.cpp can load."""
