"""Experiment files and the designs they declare: what they say is what runs, and every refusal is one line naming the
file, the key, the value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from offpath.designs import DesignError
from offpath.experiment import ExperimentError, load_experiment

BASE = """
name = "x"
[slo]
p99_ms = 1000
error_rate = 0.01
[[phases]]
name = "steady"
rate_per_s = 5
duration_s = 4
"""

OWN_PAIR = BASE + """
[designs.sync]
summary = "a Flask view that does the work"
[designs.sync.web]
command = "{python} -m gunicorn -w {concurrency} -b 127.0.0.1:{port} app:app"
env = { BROKER = "{redis_url}" }
ready = { url = "/health" }
[designs.sync.request]
path = "/orders"
body = { template = "order.json" }
[designs.sync.outcome]
finished = [200]

[designs.async]
contract = "async-contract.toml"
params = { tasks = "tasks" }
[designs.async.web]
command = ["{python}", "-m", "gunicorn", "-b", "127.0.0.1:{port}", "app_async:app"]
[designs.async.workers]
command = "{python} -m celery -A {tasks} worker --pool solo -n w{index}@%h"
ready = { log = "ready\\\\." }
[designs.async.queue]
adapter = "celery"
name = "orders"
"""

ASYNC_CONTRACT = """
[request]
path = "/orders/async"
body = { json = { item = "book" } }
[outcome]
acknowledged = [202]
id = { pointer = "/task_id" }
status = { url = "/tasks/{id}", state = "/state", done = ["SUCCESS"], failed = ["FAILURE"] }
"""


def write(tmp_path: Path, text: str, name: str = "experiment.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.fast
def test_built_in_designs_by_name_or_by_table_read_the_same():
    seed = load_experiment("seed")
    assert seed.designs == ("inline", "queued")
    queued = seed.design("queued")
    assert queued.has_workers and queued.follows_outcome and queued.declaration.census == "campaigns"
    assert queued.contract.label == "POST /campaigns" and not seed.design("inline").has_workers


@pytest.mark.fast
def test_a_teams_own_pair_is_declared_as_data(tmp_path):
    write(tmp_path, ASYNC_CONTRACT, "async-contract.toml")
    experiment = load_experiment(str(write(tmp_path, OWN_PAIR)))
    assert experiment.designs == ("sync", "async")  # the file's order: the baseline first
    sync, queued = experiment.declared
    assert sync.contract.outcome.finished == [200] and not sync.follows_outcome
    assert queued.contract.request.path == "/orders/async" and queued.follows_outcome
    assert queued.declaration.workers is not None and queued.declaration.queue is not None
    assert experiment.resolved()["declarations"]["async"]["request"]["path"] == "/orders/async"


@pytest.mark.fast
def test_use_starts_from_a_built_in_and_overrides_it(tmp_path):
    experiment = load_experiment(str(write(tmp_path, BASE + '[designs.queued]\nuse = "queued"\n'
                                                            'params = { backend = "celery" }\n')))
    assert experiment.design("queued").declaration.params == {"backend": "celery"}
    assert experiment.design("queued").declaration.workers is not None  # the rest as the built-in says


@pytest.mark.parametrize(("extra", "line"), [
    ('[designs.a]\nuse = "queue"\n', "key 'designs.a.use' has value 'queue'; allowed: one of inline, queued"),
    ('[designs.a]\nuse = "queued"\nwokers = 3\n', "unknown key 'designs.a.wokers'; allowed: census, contract"),
    ('[designs.a]\nuse = "inline"\n[designs.a.web]\ncommand = "{python} -m app --port {prot}"\n',
     "key 'designs.a.web.command' uses {prot}; allowed placeholders: "),
    ('[designs.a]\nurl = "http://127.0.0.1:8000"\n[designs.a.request]\npath = "orders"\n[designs.a.outcome]\n'
     'finished = [200]\n', "key 'designs.a.request' has value {'path': 'orders'}; allowed: a path starting with '/'"),
    ('[designs.a]\nurl = "http://127.0.0.1:8000"\ncontract = "nowhere.toml"\n',
     "key 'designs.a.contract' has value 'nowhere.toml'; allowed: a contract file"),
    ('[designs.a]\nuse = "queued"\nqueue = { adapter = "kafka" }\n',
     "key 'designs.a.queue.adapter' has value 'kafka'; allowed: one of rq, celery, dramatiq, arq, command, metrics"),
    ('[designs.a]\nurl = "http://127.0.0.1:8000"\n[designs.a.request]\npath = "/o"\n[designs.a.outcome]\n'
     'acknowledged = [202]\n', "allowed: acknowledged statuses with an id and a status check"),
    ('[layout]\nworkers = 0\n', "key 'layout.workers' has value 0; allowed: a whole number >= 1"),
    ('[layout]\npoll = "wait"\nconcurrency = 4\n', "allowed with a bounded server (concurrency 4): poll = interval"),
    ('[sweep]\nbackend = ["rq"]\n', "key 'sweep.backend' has value ['rq']; allowed: a list of at least 2 values"),
])
@pytest.mark.fast
def test_a_bad_declaration_is_one_line_naming_the_key(tmp_path, extra, line):
    path = write(tmp_path, BASE + extra)
    with pytest.raises((ExperimentError, DesignError)) as caught:
        load_experiment(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and line in message and "\n" not in message, message


@pytest.mark.fast
def test_a_sweep_over_backends_sets_each_points_queue(tmp_path):
    experiment = load_experiment(str(write(tmp_path, BASE + '[sweep]\nbackend = ["rq", "celery"]\n')))
    points = experiment.sweep.points()
    assert [p.id for p in points] == ["01-backend=rq", "02-backend=celery"]
    assert experiment.at(points[1]).design("queued").declaration.params["backend"] == "celery"
    assert experiment.at(points[1]).design("inline").declaration.params == {}


@pytest.mark.parametrize(("text", "says"), [
    (BASE + "[layout]\nwrokers = 2\n", "unknown key 'layout.wrokers'; allowed: "),
    ("repetitions = 'two'\n" + BASE, "key 'repetitions' has value 'two'; allowed: a whole number"),
    (BASE + "[capacity]\nstart_per_s = 0\nstep_per_s = 1\nmax_per_s = 5\nstep_duration_s = 2\n",
     "key 'capacity.start_per_s' has value 0; allowed: a rate > 0 (requests per second)"),
    ('name = "x"\n[slo\n', "not valid TOML"),
])
def test_offpath_bench_refuses_a_bad_file_in_one_line_with_exit_2(tmp_path, text, says):
    path = write(tmp_path, text)
    done = subprocess.run([sys.executable, "-m", "offpath.cli", "bench", str(path), "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and says in lines[0], done.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started, nothing written
