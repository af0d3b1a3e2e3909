#!/usr/bin/env bash
# Regenerates every picture the README shows, with the commands a user would type.
# The pattern and weight pictures are deterministic; the timing pictures are fresh
# measurements of this machine (they change from run to run, as timings do).
# Usage: bash docs/make_pictures.sh   (needs the plot extra: pip install -e '.[plot]')
set -euo pipefail
cd "$(dirname "$0")/.."
MHA="${MHA:-.venv/bin/mha}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Patterns (mha mask)
common=(seq_len=512 batch_size=1 mask.key_padding=null)
"$MHA" mask "${common[@]}" name=local variant=local local.window=32 --png docs/pattern_local.png
"$MHA" mask "${common[@]}" name=local-causal variant=local local.window=32 mask.causal=true --png docs/pattern_local_causal.png
"$MHA" mask seq_len=64 batch_size=1 mask.key_padding=null name=local-dilated variant=local local.window=16 local.dilation=2 --png docs/pattern_local_dilated.png
"$MHA" mask seq_len=64 batch_size=1 mask.key_padding=null name=local-sinks variant=local local.window=8 local.sinks=4 mask.causal=true --png docs/pattern_local_sinks.png
"$MHA" mask seq_len=64 batch_size=1 mask.key_padding=null name=prefix-lm mask.causal=true mask.prefix=16 --png docs/pattern_prefix_lm.png
"$MHA" mask seq_len=64 batch_size=1 mask.key_padding=null name=documents mask.causal=true "mask.documents.lengths=[20,12,32]" --png docs/pattern_documents.png
"$MHA" mask configs/custom_mask_mod.yaml seq_len=128 batch_size=1 --head 2 --png docs/pattern_custom_head2.png
"$MHA" mask "${common[@]}" name=bigbird variant=sparse sparse.pattern=bigbird sparse.block=32 --png docs/pattern_bigbird.png
"$MHA" mask "${common[@]}" name=strided-causal variant=sparse sparse.pattern=strided sparse.stride=32 mask.causal=true --png docs/pattern_strided_causal.png

# Attention weights per head (mha plot weights)
"$MHA" plot weights configs/causal_padding_masks.yaml --batch 2 --heads 0,1,2,3 --png docs/weights_causal_padding.png

# Timings (mha run / mha sweep, then mha plot results)
"$MHA" run configs/local_window.yaml --output-dir "$work/run" > /dev/null
"$MHA" plot results "$work/run" --png docs/run_local_window.png
"$MHA" sweep configs/local_window.yaml impls=[sdpa,blocked] --seq-len 512,1024,2048,4096 --output-dir "$work/sweep" --no-plot > /dev/null
"$MHA" plot results "$work/sweep" --png docs/sweep_local_window.png
