"""The one exception root demix raises, and the warning it uses for unfinished iterations.

The CLI catches :class:`DemixError` in one place and turns it into one red line and an exit
code; everything else is an internal error (exit 1).
"""


class DemixError(Exception):
    """Root of every error demix raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ParameterError(DemixError, ValueError):
    """A parameter or option has a value demix cannot use (exit code 2)."""

    exit_code = 2


class AudioError(DemixError):
    """An audio file cannot be read, is empty, silent, or otherwise unusable (exit code 2)."""

    exit_code = 2


class OutputError(DemixError):
    """An output would overwrite an input or an existing result without ``--force`` (exit code 2)."""

    exit_code = 2


class FetchError(DemixError):
    """A URL cannot be downloaded or converted (exit code 2)."""

    exit_code = 2


class ConvergenceWarning(UserWarning):
    """An iterative method stopped at ``max_iter`` before reaching its tolerance."""
