"""Exceptions raised for problems a user can fix (bad input, missing files, no network)."""


class EsasrecError(Exception):
    """Base class: every error esasrec raises on purpose for the user to read."""


class DataError(EsasrecError, ValueError):
    """The interaction data is malformed: missing columns, nulls, bad timestamps, duplicates."""


class DownloadError(EsasrecError, OSError):
    """A dataset file could not be obtained: offline, broken download or checksum mismatch."""
