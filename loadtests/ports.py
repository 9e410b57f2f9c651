"""Free loopback ports and the loopback-only rule for load targets."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; callers retry if they lose the race for it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
