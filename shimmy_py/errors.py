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
