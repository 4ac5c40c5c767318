"""Errors of the analysis subpackage (defined in :mod:`text2token.errors`, re-exported here); all are
user errors the CLI reports in one line."""

from __future__ import annotations

from ..errors import AnalysisDataError, AnalysisError

__all__ = ["AnalysisDataError", "AnalysisError"]
