"""What can go wrong in offpath, and the exit code each kind means: one policy for every command.

    exit 0  the command did what was asked (a complete run with its report; a gate that passed; `up` stopped)
    exit 1  the system under test failed a check the command exists to make (the gate found a regression;
            a chaos fault lost or duplicated acknowledged work)
    exit 2  offpath could not give an answer: bad input (an experiment, profile, environment variable, path
            or option), or the harness could not finish (a process died, Redis went away, the run was
            interrupted) — never a pass, never mistaken for a finding about the system under test

The tree:

    OffpathError
    ├── ConfigurationError   bad input; the message names what was wrong and what is allowed   → 2
    ├── HarnessError         the measurement could not be finished or trusted                  → 2
    └── CheckFailed          the system under test failed the command's check                   → 1

Errors raised below the harness (the services' settings and profiles, the analysis' results reader)
cannot derive from this tree without importing upward; `exit_code` maps them by kind in this one place.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_OK",
    "CheckFailed",
    "ConfigurationError",
    "HarnessError",
    "OffpathError",
    "exit_code",
    "known_errors",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2


class OffpathError(Exception):
    """The root of offpath's own errors; its message is one line a user can act on."""

    exit_code = EXIT_ERROR


class ConfigurationError(OffpathError):
    """Bad input: an experiment, profile, environment variable, path or option offpath cannot use."""


class HarnessError(OffpathError):
    """The harness could not finish or trust a measurement: a process died, Redis went away, an interrupt."""


class CheckFailed(OffpathError):
    """The system under test failed the check the command exists to make (a regression, lost work)."""

    exit_code = EXIT_CHECK_FAILED


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for the user as it is (one line, no traceback): offpath's own, and the
    bad-input and harness errors of the layers below, which cannot import this module."""
    from analysis.baseline import BaselineError
    from analysis.load import ResultsFolderError
    from analysis.rules import RulesError
    from offpath.experiment import ExperimentError
    from offpath.redis_server import RedisUnavailable
    from offpath.supervisor import NotReady, ProcessDied
    from services.campaign.profile import ProfileError
    from services.campaign.settings import SettingError

    return (OffpathError, ProfileError, SettingError, ResultsFolderError, RulesError, BaselineError, ExperimentError,
            RedisUnavailable, ProcessDied, NotReady)


def exit_code(exc: BaseException) -> int:
    """The exit code an error means under the policy above."""
    if isinstance(exc, OffpathError):
        return exc.exit_code
    return EXIT_ERROR  # bad input from a lower layer, a harness fault or a crash: either way no answer was given
