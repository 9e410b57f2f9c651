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

This module is the foundation of the house: it imports nothing of the project, and every layer may import
it (tests/test_architecture.py), so the services' settings and profiles, the analysis' results reader and
the harness all raise errors of this one tree, and the CLI maps them to exit codes in one place.
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


def exit_code(exc: BaseException) -> int:
    """The exit code an error means under the policy above."""
    if isinstance(exc, OffpathError):
        return exc.exit_code
    return EXIT_ERROR  # a crash is no answer either
