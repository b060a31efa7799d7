"""Errors crust-clean raises for problems a user can fix.

The CLI turns these into one line on stderr (no traceback) and an exit code:
``BadInputError`` (bad path, empty or one-class dataset, invalid option) exits 2,
``Interrupted`` (Ctrl-C; the run can be resumed) exits 130, any other ``CrustCleanError`` exits 1.
"""


class CrustCleanError(Exception):
    """A failure with a message meant for the user; exit code 1."""

    exit_code = 1


class BadInputError(CrustCleanError):
    """The input or the options make the run meaningless; exit code 2, raised before any training."""

    exit_code = 2


class Interrupted(CrustCleanError):
    """The user stopped a run (Ctrl-C); what is checkpointed can be resumed. Exit code 130, as for SIGINT."""

    exit_code = 130


class CrustCleanWarning(UserWarning):
    """Something a user should know that does not stop the work (the CLI prints it as one ``Warning:`` line)."""
