"""`offpath gate --against` for a team's own repository: the base is a commit of the repository that holds the
experiment file, and the designs it declares run from that commit's worktree — never from offpath's checkout."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from offpath.base_checkout import base_checkout, candidate_commit, repository_of, resolve_commit
from offpath.experiment import load_experiment
from offpath.serving import Conditions, SystemUnderTest, serve, serving_from
from offpath.supervisor import Supervisor

APP = '''
from flask import Flask

VERSION = "{version}"
app = Flask(__name__)


@app.post("/work")
def work():
    return {{"version": VERSION}}
'''

EXPERIMENT = '''
name = "own"
[slo]
p99_ms = 1000
error_rate = 0.01
[[phases]]
name = "steady"
rate_per_s = 5
duration_s = 3
[designs.app]
[designs.app.web]
command = "{python} -m gunicorn -w 1 -b 127.0.0.1:{port} app:app"
[designs.app.request]
path = "/work"
body = { json = { n = 1 } }
[designs.app.outcome]
finished = [200]
'''


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def version_at(url: str) -> str:
    request = urllib.request.Request(url + "/work", data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_the_base_of_a_teams_repository_is_served_from_its_own_commit(tmp_path, redis_server):
    repo = tmp_path / "team"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "experiment.toml").write_text(EXPERIMENT)
    (repo / "app.py").write_text(APP.format(version="base"))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the endpoint")
    (repo / "app.py").write_text(APP.format(version="candidate"))
    git(repo, "commit", "-qam", "a change to judge")

    root = repository_of(repo / "experiment.toml")
    assert root == repo.resolve()
    base, candidate = resolve_commit("HEAD~1", root), candidate_commit(root)
    assert base.subject == "the endpoint" and candidate.subject == "a change to judge"
    design = load_experiment(str(repo / "experiment.toml")).design("app")
    seen = {}
    with base_checkout(base, say=lambda line: None, root=root) as checkout:
        assert checkout.source != repo and checkout.home == root
        for side, system in (("base", checkout.system), ("candidate", SystemUnderTest(sys.executable, None, root))):
            with serving_from(system), Supervisor(log_dir=tmp_path / "logs" / side) as supervisor:
                served = serve(supervisor, design, Conditions(redis_url=redis_server.url))
                seen[side] = version_at(served.url)
    assert '"base"' in seen["base"] and '"candidate"' in seen["candidate"]
    assert not list(Path(checkout.source).parent.glob("*"))  # the worktree is gone once the gate is done
