"""impasto's exceptions: one base, and one class per kind of failure, each also the
built-in exception a Python caller would catch for it."""

from typing import Optional


class Error(Exception):
    """Anything that stopped a job (a non-finite loss, a failed write, ...)."""


class BadSetting(Error, ValueError):
    """A setting that cannot work: a value out of range, an unknown setting or layer."""


class BadFile(Error, OSError):
    """A file that cannot be read or used: a missing or hostile image, weights without a layer."""


class DoesNotFit(Error, MemoryError):
    """The job's memory plan does not fit; ``largest_size`` is the largest ``size`` that does
    (None: none does)."""

    largest_size: Optional[int] = None


class DeviceLost(Error):
    """The GPU device was lost."""
