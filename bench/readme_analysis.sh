#!/bin/bash
# The outputs of docs/analysis.md (results): run after bench/quality.py (the 2026-11-29 experiment; `make quality` now runs bench/recipes.sh),
# whose stage 1 + 2 and SimCSE runs it inspects. Writes to runs/issue6/.
cd "$(dirname "$0")/.." && source .venv/bin/activate && export HF_HUB_OFFLINE=1
RUN=runs/quality/t2t-s1s2
mkdir -p runs/issue6
T="Volcanic eruptions can cool the global climate for several years."
text2token inspect default "$T" --top-k 12 > runs/issue6/inspect_base.txt 2>&1
text2token inspect $RUN "$T" --top-k 12 > runs/issue6/inspect_run.txt 2>&1
text2token inspect runs/quality/simcse-texts "$T" --top-k 12 > runs/issue6/inspect_simcse.txt 2>&1
/usr/bin/time -v text2token analyze default $RUN runs/quality/simcse-texts --data ../shared/data/corpus/wiki_sentences_04.txt \
   --sample 200 --output runs/issue6/analysis --quiet > runs/issue6/analyze.txt 2>&1
for M in default $RUN; do
  text2token analyze-retrieval $M --task-dir ../shared/data/evalsuite/SciFact --max-docs 1000 --max-doc-chars 1000 \
     --alpha 0.3 0.5 0.7 0.8 0.9 0.95 --quiet --output runs/issue6/retrieval_$(basename $M).json > runs/issue6/retrieval_$(basename $M).txt 2>&1
done
date
