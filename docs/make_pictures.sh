#!/usr/bin/env bash
# Regenerates the pictures the README shows, with the commands a user would type.
# Usage: bash docs/make_pictures.sh   (needs the plot extra: pip install -e '.[plot]')
set -euo pipefail
cd "$(dirname "$0")/.."
MHA="${MHA:-.venv/bin/mha}"
common=(seq_len=512 batch_size=1 mask.key_padding=null)
"$MHA" mask "${common[@]}" name=local variant=local local.window=32 --png docs/pattern_local.png
"$MHA" mask "${common[@]}" name=local-causal variant=local local.window=32 mask.causal=true --png docs/pattern_local_causal.png
"$MHA" mask "${common[@]}" name=bigbird variant=sparse sparse.pattern=bigbird sparse.block=32 --png docs/pattern_bigbird.png
"$MHA" mask "${common[@]}" name=strided-causal variant=sparse sparse.pattern=strided sparse.stride=32 mask.causal=true --png docs/pattern_strided_causal.png
