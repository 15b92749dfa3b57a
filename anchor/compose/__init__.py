"""Compositing: the rendered face into the body template, chroma key, studio background, idle loop."""

from anchor.compose.body import BodyTemplate
from anchor.compose.compositor import Compositor
from anchor.compose.idle import IdleLoop

__all__ = ["BodyTemplate", "Compositor", "IdleLoop"]
