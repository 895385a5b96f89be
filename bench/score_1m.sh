#!/usr/bin/env bash
# The million-structure OOD scoring job of the demo issue, end to end on the CLI:
# 1M seeded synthetic crystals (generated on the fly, never all in RAM) embedded by two fast
# baseline adapters into crash-safe stores, then every structure scored by how much the two
# representations disagree on its neighbourhood (exact kNN by default; METHOD=ivf for faiss).
# Each step's wall time and peak RSS come from /usr/bin/time.
#
#   bash bench/score_1m.sh [OUT_DIR]        (N=1000000 METHOD=exact K=10 by default)
set -euo pipefail
out="${1:-/tmp/matalign-score-1m}"
n="${N:-1000000}"
method="${METHOD:-exact}"
k="${K:-10}"
mkdir -p "$out"
timed() { /usr/bin/time -f "  -> %e s wall, %M KB peak RSS" "$@"; }
for model in composition element-stats; do
  echo "== embed $model ($n synthetic crystals)"
  timed matalign embed --model "$model" --data synthetic-crystals --data-option "n=$n" \
    --batch-size 8192 --chunk-size 65536 --out "$out/$model" --resume
done
echo "== score (k=$k, method=$method)"
timed matalign score "composition=$out/composition" "element-stats=$out/element-stats" \
  --k "$k" --metric cosine --method "$method" --out "$out/scores.parquet" --overwrite
python - "$out/scores.parquet" <<'PY'
import sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(f"{t.num_rows} rows, columns {t.column_names}")
top = t.sort_by("rank").slice(0, 5).to_pydict()
for i in range(5):
    print("  rank", top["rank"][i], top["id"][i], f"mean local agreement {top['mean_local_agreement'][i]:.3f}")
PY
