"""User-facing exceptions: one per package, all `AnchorError`, so the CLI prints one line."""

from __future__ import annotations


class AnchorError(Exception):
    """A failure the user can act on; the message says what and where."""


class ConfigError(AnchorError):
    pass


class AudioError(AnchorError):
    pass


class FaceError(AnchorError):
    pass


class DatasetError(AnchorError):
    pass


class MouthError(AnchorError):
    pass


class RenderError(AnchorError):
    pass


class ComposeError(AnchorError):
    pass


class AvatarError(AnchorError):
    pass


class StreamError(AnchorError):
    pass


class BenchError(AnchorError):
    pass


class TtsError(AnchorError):
    pass
