"""Errors of the evaluation subpackage (defined in :mod:`text2token.errors`, re-exported here); all are
user errors the CLI reports in one line."""

from __future__ import annotations

from ..errors import EvalDataError, EvalError, UnknownTaskError

__all__ = ["EvalDataError", "EvalError", "UnknownTaskError"]
