"""The experiments people rerun, as modules: ``python -m bench.<name>`` from the repository root
(``python bench/<name>.py`` works too, as RESULTS.md and docs/ print it).

- ``recipes`` (with ``recipes.sh``, ``make quality``): the quality experiment of RESULTS.md, one row per command.
- ``quality``: the earlier quality experiment (2026-11-29, RESULTS.md "Earlier experiment").
- ``fidelity``: all-MiniLM-L6-v2 scored by ``text2token.evaluation`` against its published MTEB scores.
- ``pair_topic``, ``pair_overlap``: the pair analysis of TwitterSemEval2015 (topic share; word-Jaccard AP).
- ``gpu_step``: step time and memory of a Llama-3-8B-sized training step on a GPU (``--tiny`` anywhere).
- ``encode_memory``: peak memory of a streaming ``text2token encode`` (docs/scaling-out.md).
- ``peak_rss``: peak resident memory of any command, with the phase it is in.

The finished performance investigations (train and encode throughput, bf16 quality, utilisation,
targets and training memory, scaling) were removed after commit e561de1; their figures and verdicts
are in docs/performance.md, and ``git show e561de1:bench/<name>.py`` has them.
"""
