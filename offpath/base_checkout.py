"""The base commit of `offpath gate --against REF`: resolved from git, checked out into a temporary worktree (and,
when its dependencies differ from this checkout's, installed into a venv of its own), ready to be measured
interleaved with the candidate on the same CPUs (offpath/gate.py).

What runs from which tree. The measuring harness — runner, Locust and its recorder, the queue probe, the analysis and
the rules — is always the candidate's (this checkout's); only the system under test, `services/` (the two apps, the RQ
workers, the workload profiles) and the dependencies they run on, comes from each side. So both sides are measured by
the same instrument and a change to the harness does not read as a regression of the services; and the experiment
(offpath/experiments/gate.toml) is the candidate's for both, so a change to it changes both sides alike. The price: a
base whose services this harness cannot start or drive (an app factory renamed, a request contract changed) cannot
be judged by it, and that is a harness error that names the base commit and the reason, never a pass. The other
choice, running each side's own `offpath bench gate`, would judge two instruments against each other: a faster
recorder or a changed experiment would pass or fail the services.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from analysis.gate.verdict import Commit
from foundation.errors import ConfigurationError, HarnessError
from offpath.designs import Design, built_in_names
from offpath.manifest import PROJECT_ROOT
from offpath.serving import SystemUnderTest, built_in
from offpath.supervisor import python

__all__ = ["MAIN_BRANCHES", "BaseCheckout", "BaseError", "base_checkout", "candidate_commit", "default_base",
           "repository_of", "resolve_commit"]

log = logging.getLogger("offpath.base_checkout")

# Where the default base comes from: the merge base of HEAD with the first of these that exists.
MAIN_BRANCHES = ("main", "origin/main", "master", "origin/master")
INSTALL_TIMEOUT_S = 600


class BaseError(HarnessError):
    """The base commit could not be checked out, installed or served; the message names the commit and the reason."""


def _git(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def default_base(root: Path = PROJECT_ROOT) -> Commit:
    """The base a change is judged against when none is named: the merge base of HEAD with the main branch (what a
    pull request changes); on the main branch itself (the merge base is HEAD) or where no merge base can be found
    (no main branch, a shallow clone), HEAD~1 (what the last commit changed). `ref` says which it was. BaseError when
    there is no parent commit either (a first commit, a clone of depth 1)."""
    head = _git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=root).stdout.strip()
    for branch in MAIN_BRANCHES:
        if _git("rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}", cwd=root).returncode != 0:
            continue
        found = _git("merge-base", "HEAD", branch, cwd=root).stdout.strip()
        if found and found != head:
            return replace(resolve_commit(found, root), ref=f"merge base with {branch}")
        break
    if _git("rev-parse", "--verify", "--quiet", "HEAD~1^{commit}", cwd=root).returncode != 0:
        raise BaseError("HEAD has no parent commit in this clone (a first commit, or a shallow clone of depth 1): "
                        "there is no base to judge against; fetch more history, name one with --against REF, or "
                        "judge the within-run rules only with --baseline none")
    return replace(resolve_commit("HEAD~1", root), ref="HEAD~1")


def resolve_commit(ref: str, root: Path = PROJECT_ROOT) -> Commit:
    """The commit `ref` names; ConfigurationError (one line) for a ref git does not know."""
    if not ref or ref.startswith("-"):
        raise ConfigurationError(f"--against {ref!r}: not a git ref; allowed: a commit, branch or tag of this "
                                 "repository, e.g. HEAD~1 or main")
    found = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=root)
    if found.returncode != 0 or not found.stdout.strip():
        raise ConfigurationError(f"--against {ref!r}: no such commit in {root}; allowed: a commit, branch or tag of "
                                 "this repository, e.g. HEAD~1 or main (a shallow clone may lack it: fetch more "
                                 "history, or use --baseline none)")
    sha = found.stdout.strip()
    return Commit(sha=sha, subject=_git("log", "-1", "--format=%s", sha, cwd=root).stdout.strip(), ref=ref)


def candidate_commit(root: Path = PROJECT_ROOT) -> Commit:
    """This checkout: HEAD, and whether tracked files differ from it (then the candidate is HEAD plus those)."""
    head = _git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=root)
    if head.returncode != 0:
        raise BaseError(f"{root} has no commit yet: nothing to name the candidate by")
    sha = head.stdout.strip()
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=root).stdout.strip())
    return Commit(sha=sha, subject=_git("log", "-1", "--format=%s", sha, cwd=root).stdout.strip(), ref="HEAD",
                  dirty=dirty)


def repository_of(path: Path) -> Path:
    """The repository whose commits `offpath gate --against` compares for an experiment file: the git repository
    holding it (a team's own, gating its own endpoint), or offpath's where it is in none (a file written for offpath's
    own designs)."""
    folder = path.resolve().parent
    found = _git("rev-parse", "--show-toplevel", cwd=folder) if folder.is_dir() else None
    if found is None or found.returncode != 0 or not found.stdout.strip():
        return PROJECT_ROOT.resolve()
    return Path(found.stdout.strip()).resolve()


@dataclass(frozen=True)
class BaseCheckout:
    commit: Commit
    source: Path  # the worktree
    python: str  # its venv's interpreter (offpath's own repository), or the one the designs declare (a team's)
    home: Path = PROJECT_ROOT  # the repository it is a commit of

    @property
    def system(self) -> SystemUnderTest:
        return SystemUnderTest(self.python, self.source, self.home)


@contextmanager
def base_checkout(commit: Commit, say: Callable[[str], None], root: Path = PROJECT_ROOT) -> Iterator[BaseCheckout]:
    """Check `commit` of the repository at `root` out into a temporary worktree; removed again on leaving. offpath's
    own repository is installed editable into a venv of its own (pip's cache is reused) and its services are checked
    to import as this harness starts them. A team's repository is not installed: its designs' commands run inside the
    worktree, with the interpreter they declare (or offpath's)."""
    folder = Path(tempfile.mkdtemp(prefix=f"offpath-base-{commit.short}-"))
    source, venv = folder / "src", folder / "venv"
    try:
        added = _git("worktree", "add", "--detach", "--quiet", str(source), commit.sha, cwd=root)
        if added.returncode != 0:
            raise BaseError(f"base {commit.label}: git worktree add failed: {_last_line(added.stderr)}")
        if root.resolve() != PROJECT_ROOT.resolve():
            say(f"base {commit.label}: checked out into {source}; its designs run there")
            yield BaseCheckout(commit, source, python(), root.resolve())
            return
        base_needs = _requirements(source)
        if base_needs is not None and base_needs == _requirements(PROJECT_ROOT):
            say(f"base {commit.label}: checked out into {source}; it declares this checkout's dependencies, so it "
                "runs on this interpreter, from its own tree")
            interpreter = python()
        else:
            say(f"base {commit.label}: checked out into {source}; its dependencies differ: installing it into its "
                "own venv")
            _run(commit, "creating its venv", [python(), "-m", "venv", str(venv)])
            interpreter = str(venv / "bin" / "python")
            _run(commit, "pip install -e", [interpreter, "-m", "pip", "install", "--quiet",
                                            "--disable-pip-version-check", "-e", str(source)])
        _check_serves(commit, interpreter, source)
        yield BaseCheckout(commit, source, interpreter)
    finally:
        _git("worktree", "remove", "--force", str(source), cwd=root)
        shutil.rmtree(folder, ignore_errors=True)
        _git("worktree", "prune", cwd=root)


def _requirements(checkout: Path) -> dict[str, object] | None:
    """What a checkout of offpath asks of its environment: its Python and its dependencies, optional ones included
    (None: no readable pyproject.toml). Equal on both sides, the base needs no venv of its own: its processes start
    from its worktree, whose packages come first on their path (`-m` puts the folder it starts in first; this
    checkout's editable install is found only after it), on the very interpreter and libraries the candidate runs on."""
    try:
        project = tomllib.loads((checkout / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return {key: project.get(key) for key in ("requires-python", "dependencies", "optional-dependencies")}


def _run(commit: Commit, what: str, argv: list[str], cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BaseError(f"base {commit.label}: {what} did not finish within {INSTALL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()] or done.stderr.splitlines()
        raise BaseError(f"base {commit.label}: {what} failed (exit {done.returncode}): "
                        f"{_last_line(chr(10).join(errors) or done.stdout)}")


def _check_serves(commit: Commit, interpreter: str, source: Path) -> None:
    """Import what this harness will start from the base (each design's app factory, the worker module), as the
    harness starts it: the base's interpreter, from the base's folder."""
    targets = sorted({target for name in built_in_names() for target in _imported_by(built_in(name))})
    probe = ("import importlib, sys\n"
             f"for target in {targets!r}:\n"
             "    module, _, attr = target.partition(':')\n"
             "    loaded = importlib.import_module(module)\n"
             "    if attr and not callable(getattr(loaded, attr, None)):\n"
             "        sys.exit(f'{module} has no {attr}()')\n")
    try:
        _run(commit, "importing its services as this harness starts them", [interpreter, "-c", probe], cwd=source)
    except BaseError as exc:
        raise BaseError(f"{exc}; this harness cannot serve that base (its services differ in how they are "
                        "started): judge against a later base, or against a stored baseline") from None


def _imported_by(design: Design) -> list[str]:
    """What a design's commands import from its checkout: each `--factory module:function`, each `-m module` that is
    not a third party's (uvicorn, gunicorn, celery...: the base's venv has them or its install failed already)."""
    targets = []
    for tier in (design.declaration.web, design.declaration.workers):
        argv = tier.argv_template() if tier is not None else []
        for flag, value in zip(argv, argv[1:], strict=False):
            if flag == "--factory":
                targets.append(value)
            elif flag == "-m" and value.split(".")[0] in ("services",):
                targets.append(f"{value}:")
    return targets
