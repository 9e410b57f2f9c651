"""A sweep in the run manifest: each point's record (what it sets, the experiment and profile it runs, its cells as
they run) and the check that a run folder is one this sweep may resume."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foundation.errors import ConfigurationError
from foundation.experiment_facts import ExperimentFacts
from foundation.format import MANIFEST_FILE, SCHEMA_VERSION, SWEEP_KIND
from foundation.manifest_format import PointRecord, ProfileFacts, RunRecord, schema_version_of
from offpath.experiment import Experiment, SweepPoint
from services.campaign.profile import Profile, ProfileSpec

__all__ = ["check_resumable", "point_record", "profile_facts"]


def profile_facts(profile: Profile) -> ProfileFacts:
    """What the manifest records of a workload profile: its name, description, seed and the two steps' costs."""
    return ProfileFacts(name=profile.name, description=profile.description, seed=profile.seed,
                        generation=profile.generation.model_dump(), automation=profile.automation.model_dump())


def point_record(point: SweepPoint, experiment: Experiment) -> PointRecord:
    """A sweep point's entry in the manifest's points, pending: what it sets and the experiment it runs (as it runs,
    its processes, placement and cells join it, as a plain run's manifest holds them)."""
    return PointRecord(id=point.id, values=point.as_dict(), status="pending",
                       experiment=ExperimentFacts(experiment.resolved()),
                       profile=profile_facts(ProfileSpec.parse(experiment.profile).load()))


def _comparable(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment as the manifest holds it (JSON), without where its file was read from."""
    return {k: v for k, v in json.loads(json.dumps(resolved)).items() if k != "source"}


def check_resumable(run_dir: Path, experiment: Experiment) -> None:
    """ConfigurationError unless run_dir is a sweep's folder written by this very experiment (its file may have moved,
    nothing in it may have changed): a resume must add points to the run they belong to."""
    path = run_dir / MANIFEST_FILE
    where = f"--resume {run_dir}"
    if experiment.sweep is None:
        raise ConfigurationError(f"{where}: experiment {experiment.name!r} has no [sweep]; only a sweep resumes "
                                 "(run a plain experiment again with `offpath bench`)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigurationError(f"{where}: no readable {MANIFEST_FILE} there; pass the folder of the interrupted "
                                 "sweep, such as results/<run-id>") from None
    if schema_version_of(data) != SCHEMA_VERSION:
        raise ConfigurationError(f"{where}: not a results folder of schema_version {SCHEMA_VERSION}; start a new run")
    try:
        manifest = RunRecord.from_dict(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: its {MANIFEST_FILE} is damaged ({type(exc).__name__}: {exc}); start a new "
                                 "run") from None
    if manifest.kind != SWEEP_KIND:
        raise ConfigurationError(f"{where}: not a sweep's run folder; only a sweep resumes")
    ran, asked = _comparable(manifest.experiment.resolved), _comparable(experiment.resolved())
    if ran != asked:
        differ = sorted(k for k in set(ran) | set(asked) if ran.get(k) != asked.get(k))
        raise ConfigurationError(f"{where}: that run was written by experiment {ran.get('name')!r} with other settings "
                                 f"({', '.join(differ)} differ); resume it with the experiment it ran, or start a new "
                                 "run")
