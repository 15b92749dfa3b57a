"""Avatar bundles (manifest, load/validate, write), the per-frame engine and the builders."""

from anchor.avatar.bundle import AvatarBundle, default_avatar_path, load_avatar, write_avatar

__all__ = ["AvatarBundle", "default_avatar_path", "load_avatar", "write_avatar"]
