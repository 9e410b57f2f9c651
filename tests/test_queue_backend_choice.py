"""The queue backend is chosen per deployment by OFFPATH_QUEUE_BACKEND (rq, the default, celery or dramatiq); a name
offpath does not know stops the service, the worker and the CLI with one line naming the variable, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from foundation.errors import EXIT_ERROR
from services.campaign.settings import QUEUE_BACKENDS, SettingError, Settings
from services.queued.backend import queue_backend
from tests.conftest import project_root

EXPECTED = "environment variable OFFPATH_QUEUE_BACKEND has value 'kafka'; allowed: rq, celery, dramatiq"


@pytest.mark.fast
def test_rq_is_the_default_and_every_named_backend_exists():
    assert Settings.from_env({}).queue_backend == "rq"
    for name in QUEUE_BACKENDS:
        assert Settings.from_env({"OFFPATH_QUEUE_BACKEND": name}).queue_backend == name
        assert queue_backend(name).name == name


@pytest.mark.fast
def test_an_unknown_backend_is_a_setting_error_naming_what_is_allowed():
    with pytest.raises(SettingError) as raised:
        Settings.from_env({"OFFPATH_QUEUE_BACKEND": "kafka"})
    assert str(raised.value) == EXPECTED


@pytest.mark.parametrize("argv, program", [
    (["-m", "services.queued.worker", "--name", "w"], "services.queued.worker"),
    (["-m", "uvicorn", "--factory", "services.queued.app:create_app", "--port", "1"], "services.queued.app"),
    (["-m", "offpath.cli", "up", "queued"], "offpath up"),
], ids=["worker", "service", "cli"])
def test_an_unknown_backend_stops_each_entry_point_with_one_line_and_exit_2(argv, program):
    result = subprocess.run([sys.executable, *argv], cwd=project_root(), capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OFFPATH_QUEUE_BACKEND": "kafka"})
    assert result.returncode == EXIT_ERROR, result.stderr
    assert result.stderr.strip().splitlines() == [f"{program}: {EXPECTED}"]
