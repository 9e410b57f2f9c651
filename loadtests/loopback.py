"""The loopback-only rule for load targets: offpath sends load to this machine only, unless told otherwise."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteTargetRefused(ValueError):
    pass


def require_loopback(url: str, allow_remote: bool = False) -> None:
    if not allow_remote and not is_loopback_url(url):
        raise RemoteTargetRefused(
            f"refusing to send load to {url}: offpath only loads loopback targets (127.0.0.1, ::1) "
            "unless --allow-remote is given"
        )
