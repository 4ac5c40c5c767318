"""Target distributions q(· | x) over the vocabulary, stored sparsely as (token ids, weights).

- :mod:`.data_driven`: stage 1, the tokens of the text itself.
- :mod:`.model_derived`: stage 2, the frozen stage-1 teacher's tokens, filtered by a background prior.

:func:`build_stage1_targets` and :func:`build_stage2_targets` build them for a whole corpus, over every process
of a run.
"""

from .data_driven import DataDrivenTargets, build_stage1_targets, english_stop_words, mix_targets
from .model_derived import (
    background_distribution,
    build_stage2_targets,
    model_derived_target,
    sparsify,
    teacher_targets,
)

__all__ = [
    "DataDrivenTargets",
    "build_stage1_targets",
    "build_stage2_targets",
    "english_stop_words",
    "mix_targets",
    "background_distribution",
    "model_derived_target",
    "sparsify",
    "teacher_targets",
]
