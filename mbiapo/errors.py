"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class MbiapoError(Exception):
    """Bad input (file, flag, config value). The message is shown to the user as is."""
