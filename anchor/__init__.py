"""anchor: real-time streaming virtual news anchor (audio -> mouth -> facial map -> face -> WebRTC)."""

__version__ = "0.1.0"
