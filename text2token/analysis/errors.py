"""Errors of the analysis subpackage; all are user errors the CLI reports in one line."""

from __future__ import annotations

from ..errors import DataError, Text2TokenError


class AnalysisError(Text2TokenError):
    """An analysis cannot run as asked (bad option, model or output folder)."""


class AnalysisDataError(DataError, AnalysisError):
    """The texts or the task folder of an analysis are missing, empty or malformed."""
