#!/usr/bin/env bash
# The built-in default job: fetch -> embed with two encoders (disjoint texts) -> train -> eval -> translate.
# Re-running skips finished steps; DEMO_DIR, DEMO_N (texts per side), DEMO_EVAL (held-out texts), SRC_ENCODER,
# TGT_ENCODER and DEMO_PIVOT (a built-in encoder to step through, e.g. minilm-l6 for minilm-l3 -> mpnet-base)
# override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
VB=${VB:-.venv/bin/vecbridge}
DIR=${DEMO_DIR:-out/demo}
N=${DEMO_N:-25000}
NEVAL=${DEMO_EVAL:-8192}
SRC=${SRC_ENCODER:-minilm-l3}
TGT=${TGT_ENCODER:-minilm-l6}
PIVOT=${DEMO_PIVOT:-}
NSTORE=${DEMO_STORE:-5000}
NREF=${DEMO_REF:-5000}
PORT=${DEMO_PORT:-8765}
mkdir -p "$DIR"

step() { printf '\n== %s\n' "$*"; }
embed() {  # embed ENCODER SPEC LIMIT OUT
  [ -f "$4" ] || $VB embed --encoder "$1" --input "$2" --limit "$3" --output "$4"
}

step "corpora"
$VB data fetch
$VB data list

step "embed: $SRC on train_a, $TGT on train_b (disjoint texts), both on held-out eval texts"
embed "$SRC" builtin:pool:train_a "$N" "$DIR/$SRC.train_a.npy"
embed "$TGT" builtin:pool:train_b "$N" "$DIR/$TGT.train_b.npy"
embed "$SRC" builtin:pool:eval "$NEVAL" "$DIR/$SRC.eval.npy"
embed "$TGT" builtin:pool:eval "$NEVAL" "$DIR/$TGT.eval.npy"

step "train an unsupervised translator $SRC -> $TGT (no pairs)"
[ -d "$DIR/$SRC-to-$TGT" ] || $VB train --source "$DIR/$SRC.train_a.npy" --target "$DIR/$TGT.train_b.npy" \
  --output "$DIR/$SRC-to-$TGT" ${PIVOT:+--pivot "$PIVOT"}

step "evaluate on held-out pairs (pool $NEVAL)"
$VB eval --translator "$DIR/$SRC-to-$TGT" --source "$DIR/$SRC.eval.npy" --target "$DIR/$TGT.eval.npy" --pool "$NEVAL"

step "translate stored $SRC vectors into $TGT's space"
$VB translate --translator "$DIR/$SRC-to-$TGT" --input "$DIR/$SRC.eval.npy" \
  --output "$DIR/$SRC.eval.in-$TGT.npy" --overwrite
step "a vector database on the old model: $NSTORE WordNet glosses embedded by $SRC into Chroma"
[ -d "$DIR/chroma" ] || $VB embed --encoder "$SRC" --input builtin:wordnet:eval --limit "$NSTORE" \
  --output "chroma:$DIR/chroma#glosses"
$VB stores inspect "chroma:$DIR/chroma#glosses"

step "migrate the collection to $TGT with the translator (plan, verify on held-out documents, swap in, verdict)"
$VB migrate --from "chroma:$DIR/chroma#glosses" --to "chroma:$DIR/chroma#glosses-$TGT" --target-encoder "$TGT" \
  --translator "$DIR/$SRC-to-$TGT" --verify-documents 500 --overwrite
$VB stores inspect "chroma:$DIR/chroma#glosses-$TGT"

step "audit the old collection for leakage: an attacker with only its vectors, $TGT and public glosses infers each gloss's WordNet class (lexname); three defences (report in $DIR/audit)"
# the attacker adapts the translator to the leak against public texts of its domain (WordNet's train_b split,
# disjoint from the stored eval glosses: adaptation against an off-domain reference can drift) and trains its
# lexname probe on the train_a split; the owner's truth is the eval split the collection was embedded from
printf '{"lexname": {"train": "builtin:wordnet:train_a", "column": "lexname"}}\n' > "$DIR/attributes.json"
$VB audit --vectors "chroma:$DIR/chroma#glosses" --known-encoder "$TGT" --translator "$DIR/$SRC-to-$TGT" \
  --reference builtin:wordnet:train_b --reference-limit "$NREF" --attributes "$DIR/attributes.json" \
  --truth builtin:wordnet:eval --defenses noise:0.05,int8,rotation --report "$DIR/audit" --overwrite

step "serve $TGT and the translator over HTTP (OpenAI-compatible), one request, then a graceful stop"
$VB serve --encoder "$TGT" --translator "demo=$DIR/$SRC-to-$TGT" --port "$PORT" &
SERVER=$!
for _ in $(seq 120); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
curl -fs "http://127.0.0.1:$PORT/v1/models"; echo
curl -fs "http://127.0.0.1:$PORT/v1/embeddings" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$TGT@demo\", \"input\": [\"a new model's query, in the old index's space\"]}" | head -c 300; echo
kill -TERM "$SERVER"; wait "$SERVER"
echo "done: $DIR"
