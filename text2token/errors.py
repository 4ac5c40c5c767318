"""Errors a user can act on: the one module of them, the evaluation and analysis subpackages' included
(``text2token.evaluation.errors`` and ``text2token.analysis.errors`` re-export theirs from here).

Every error the command line reports as one line derives from :class:`Text2TokenError`;
anything else is a bug and keeps its traceback.
"""


class Text2TokenError(Exception):
    """Base class of every user-facing error of text2token."""


class ConfigError(Text2TokenError, ValueError):
    """A configuration key, value or file is wrong."""


class DataError(Text2TokenError, ValueError):
    """Training or evaluation data is missing or malformed."""


class BackboneError(Text2TokenError, ValueError):
    """A backbone cannot be found, loaded or used."""


class RunFolderError(Text2TokenError):
    """A run folder is missing, incomplete or belongs to another run."""


class NonFiniteError(Text2TokenError, FloatingPointError):
    """Training produced a non-finite loss or gradient."""


class DiskFullError(Text2TokenError, OSError):
    """The disk (or quota) filled up while saving; what was there before is kept."""


class WriteError(Text2TokenError, OSError):
    """A file or folder could not be written for another reason than a full disk (no permission, a
    read-only filesystem, an I/O error); the message names the path and the cause. ``filename`` and
    ``strerror`` are those of the failed call, as an ``OSError``'s."""

    def __init__(self, message: str, errno: int | None = None, strerror: str | None = None,
                 filename: str | None = None):
        OSError.__init__(self, errno, strerror, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


class LockedError(Text2TokenError):
    """Another live process is writing the same run folder or output file."""


# ------------------------------------------------------------------ evaluation (text2token eval)
class EvalError(Text2TokenError):
    """An evaluation cannot run as asked (bad model, task, option or cache)."""


class EvalDataError(DataError, EvalError):
    """A task folder or one of its files is missing or malformed; the message names the file and line."""


class UnknownTaskError(EvalError, ValueError):
    """A task or benchmark name is neither a local task folder nor known to mteb."""


# ------------------------------------------------------------------ analysis (inspect, analyze-*)
class AnalysisError(Text2TokenError):
    """An analysis cannot run as asked (bad option, model or output folder)."""


class AnalysisDataError(DataError, AnalysisError):
    """The texts or the task folder of an analysis are missing, empty or malformed."""
