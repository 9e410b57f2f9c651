"""Security defaults: loopback binds, Redis passwords, no load on remote targets."""

from __future__ import annotations

import pytest
import redis

from loadtests.loopback import RemoteTargetRefused, is_loopback_url, require_loopback
from offpath.redis_server import start_redis
from tests.conftest import valid_body


def test_services_work_with_a_password_protected_redis(launch, profiles):
    private = start_redis(password="s3cret-pass")
    try:
        assert ":s3cret-pass@127.0.0.1:" in private.url
        running = launch("queued", profiles["quick"], workers=1, redis_url=private.url)
        with running.client() as client:
            assert client.post("/campaigns", json=valid_body()).status_code == 202
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(private.url.replace(":s3cret-pass@", "")).set("x", 1)
    finally:
        private.stop()


def test_embedded_redis_and_services_bind_to_loopback(launch, profiles, redis_server):
    running = launch("inline", profiles["quick"])
    assert running.url.startswith("http://127.0.0.1:")
    if redis_server.embedded:
        assert running.redis().config_get("bind")["bind"] == "127.0.0.1"
        assert running.redis().config_get("protected-mode")["protected-mode"] == "yes"


@pytest.mark.fast
@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:8080", "http://127.0.0.5"])
def test_loopback_targets_are_allowed(url):
    assert is_loopback_url(url)
    require_loopback(url)


# Non-loopback targets that reach nothing even if the guard broke: documentation ranges (RFC 5737, RFC 3849) and
# a name that never resolves (RFC 6761).
@pytest.mark.fast
@pytest.mark.parametrize("url", ["http://192.0.2.1:8000", "http://[2001:db8::1]:80", "http://remote.invalid",
                                 "http://0.0.0.0:80"])
def test_remote_targets_are_refused_unless_allowed(url):
    with pytest.raises(RemoteTargetRefused, match="--allow-remote"):
        require_loopback(url)
    require_loopback(url, allow_remote=True)


def test_locustfile_refuses_a_remote_host_before_sending_anything():
    """The host is a name that never resolves (RFC 6761): were the guard broken, the run would still load nothing."""
    import subprocess
    import sys

    from tests.conftest import project_root

    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(project_root() / "loadtests" / "locustfile.py"), "--headless",
         "--host", "http://remote.invalid:80", "-t", "2s"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "--allow-remote" in result.stderr + result.stdout
