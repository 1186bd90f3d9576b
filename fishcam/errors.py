"""One exception tree. Each error knows the exit code the CLI returns for it."""

from __future__ import annotations


class FishcamError(Exception):
    """Base of every error fishcam raises on purpose."""

    exit_code = 1


class ConfigError(FishcamError):
    """A config file, a ``--set`` override or a command-line value is wrong."""

    exit_code = 2


class ModelError(FishcamError):
    """A model is missing, unsafe, or does not match what its spec says."""

    exit_code = 3


class MissingModelError(ModelError):
    """A model file is not on this machine; the message says how to get it."""


class UnsafeCheckpointError(ModelError):
    """A checkpoint holds pickled Python objects; fishcam loads tensors only."""


class SourceError(FishcamError):
    """An input cannot be opened or read."""

    exit_code = 3


class OutputError(FishcamError):
    """An output cannot be written: a read-only or missing folder, a path that is a file, a full
    disk. The message names the path and the cause; what was written before stays valid."""

    exit_code = 6


class SpeciesListError(ConfigError):
    """The fallback's species list is missing, empty or has duplicates."""


class TrainingError(FishcamError):
    """Training or evaluation could not be done: unusable data (named), label sets that disagree
    between splits, a loss that diverged, or a GPU out of memory (with batch-size advice)."""

    exit_code = 5


class DatasetError(TrainingError):
    """A labelled image collection cannot be used as it is; the message names the class or file."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: finish open tracks, flush, close the video, exit."""


# Exit codes that are not errors raised by library code.
EXIT_OK = 0
EXIT_PARTIAL_INPUT = 4  # finished, but the input was damaged: outputs cover what was readable
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_ERROR = 1  # a bug: an error fishcam did not raise on purpose


def exit_code_for(error: BaseException | None, *, gave_up: bool = False, damaged: bool = False) -> int:
    """The one mapping from how something ended to the process's exit code (README, Exit codes):
    ``error`` is what ended it (None: it ran to its end), ``gave_up`` a live source that stopped
    reconnecting, ``damaged`` an input that could not all be read."""
    if isinstance(error, Terminated):
        return EXIT_TERMINATED
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, FishcamError):
        return error.exit_code
    if error is not None:
        return EXIT_ERROR
    if gave_up:
        return SourceError.exit_code
    return EXIT_PARTIAL_INPUT if damaged else EXIT_OK
