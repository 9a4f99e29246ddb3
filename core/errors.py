"""What can go wrong for a user, as exception classes that carry how the process ends.

Every error a user can cause or fix (a config, a data file, a run directory, a diverging run,
an interruption) is a `DlrunError` whose `exit_code` the command line returns and whose message
is printed as is. Anything else that escapes is a bug in dlrun: the command line says so, exits
1 and keeps the traceback (`--debug`, or `error.log` in the run directory). This module imports
nothing heavy, so the command line can name these classes without starting JAX.
"""

from __future__ import annotations


class DlrunError(Exception):
    """A failure the user can act on; the message says what and where."""

    exit_code = 1


class ConfigError(DlrunError):
    """A config, sweep file or command-line option that cannot be used."""

    exit_code = 2


class DataError(DlrunError):
    """A data file that exists but cannot be used; the message names the file."""

    exit_code = 2


class DataNotFoundError(DataError):
    """A data file is absent and could not be downloaded; the message says where to put it."""


class RunDirError(DlrunError):
    """A run or sweep directory that cannot be created, written or locked."""

    exit_code = 2


class CheckpointError(DlrunError):
    """A checkpoint that is missing, unreadable or does not fit the config."""

    exit_code = 2


class SweepError(DlrunError):
    """A sweep that cannot be created, resumed or run."""

    exit_code = 2


class ExecutorError(DlrunError):
    """An executor that cannot start (Ray missing or unreachable)."""

    exit_code = 2


class CompareError(DlrunError):
    """Nothing to compare, or a directory that is not a run."""

    exit_code = 2


class TrainingDiverged(DlrunError):
    """The loss or a gradient stopped being finite; the epochs before it and the last good
    checkpoint are kept."""

    exit_code = 1


class TrainingInterrupted(DlrunError):
    """SIGINT or SIGTERM: the current step finished and a checkpoint was written; resumable."""

    exit_code = 130
