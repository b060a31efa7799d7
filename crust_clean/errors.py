"""Errors crust-clean raises for problems a user can fix.

The CLI turns these into one line on stderr (no traceback) and an exit code:
``BadInputError`` (bad path, empty or one-class dataset, invalid option) exits 2,
any other ``CrustCleanError`` exits 1.
"""


class CrustCleanError(Exception):
    """A failure with a message meant for the user; exit code 1."""

    exit_code = 1


class BadInputError(CrustCleanError):
    """The input or the options make the run meaningless; exit code 2, raised before any training."""

    exit_code = 2
