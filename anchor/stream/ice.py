"""Make 127.0.0.1 an ICE host candidate.

aioice (under aiortc) skips loopback addresses when it gathers host candidates, so a browser and
the server talking over 127.0.0.1 only (same machine, a private network namespace, CI) never pair
up. aioice has no option for it; its gatherer calls the module-level `get_host_addresses`, so we
wrap that one function to append 127.0.0.1. Remote viewers are unaffected: they simply never
reach that candidate, and the other host candidates still pair as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def enable_loopback_candidates() -> None:
    """Idempotently add 127.0.0.1 to aioice's host candidates (IPv4 gathering only)."""
    import aioice.ice

    current: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
    if getattr(current, "_anchor_loopback", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(current(use_ipv4, use_ipv6))
        if use_ipv4 and LOOPBACK not in addresses:
            addresses.append(LOOPBACK)
        return addresses

    get_host_addresses._anchor_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses
    log.debug("ICE: 127.0.0.1 added to the host candidates")
