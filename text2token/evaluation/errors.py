"""Errors of the evaluation subpackage; all are user errors the CLI reports in one line."""

from __future__ import annotations

from ..errors import DataError, Text2TokenError


class EvalError(Text2TokenError):
    """An evaluation cannot run as asked (bad model, task, option or cache)."""


class EvalDataError(DataError, EvalError):
    """A task folder or one of its files is missing or malformed; the message names the file and line."""


class UnknownTaskError(EvalError, ValueError):
    """A task or benchmark name is neither a local task folder nor known to mteb."""
