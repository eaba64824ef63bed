#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a while, as many at
# once as there are cores (each target is one single-threaded process).
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]   (default 20)
# Prints each target's execution count; any crash fails the run and leaves the input in .run/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
out=.run/fuzz
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.)
parallel=$(nproc)
failures="$out/failures"
rm -f "$failures"
# Runs "$@" in the background once fewer than $parallel jobs run; a failure is noted in $failures.
spawn() {
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  { "$@" || echo "$*" >>"$failures"; } &
}
check_failures() {
  wait
  if [ -s "$failures" ]; then
    echo "fuzz: failed: $(tr '\n' ';' <"$failures")"
    exit 1
  fi
}
compile() {  # name, sources...
  local name=$1
  shift
  clang++ "${flags[@]}" "$@" -o "$out/$name.new" && mv "$out/$name.new" "$out/$name"
}
build() {  # name, sources...
  local name=$1
  shift
  if [ ! -x "$out/$name" ] || [ -n "$(find core backends gateway metering billing tests/fuzz -newer "$out/$name" 2>/dev/null)" ]; then
    spawn compile "$name" "$@"
  fi
}
build json_dom_fuzz tests/fuzz/json_dom_fuzz.cpp core/json_dom.cpp
build sse_fuzz tests/fuzz/sse_fuzz.cpp backends/sse.cpp
build openai_request_fuzz tests/fuzz/openai_request_fuzz.cpp gateway/openai_request.cpp core/json_dom.cpp \
  gateway/request_checks.cpp gateway/embeddings_request.cpp gateway/responses_request.cpp \
  metering/worst_case.cpp metering/prompt_count.cpp metering/tokenizer.cpp metering/pretokenizer.cpp \
  metering/unicode.cpp metering/unicode_tables.cpp metering/attribution.cpp \
  core/json_text.cpp core/error.cpp
build tokenizer_fuzz tests/fuzz/tokenizer_fuzz.cpp metering/tokenizer.cpp metering/pretokenizer.cpp \
  metering/unicode.cpp metering/unicode_tables.cpp core/json_dom.cpp core/error.cpp core/json_text.cpp
build query_params_fuzz tests/fuzz/query_params_fuzz.cpp gateway/query_params.cpp gateway/usage_params.cpp \
  billing/usage_buckets.cpp metering/attribution.cpp metering/unicode.cpp metering/unicode_tables.cpp \
  core/json_dom.cpp core/json_text.cpp core/error.cpp
build spool_fuzz tests/fuzz/spool_fuzz.cpp billing/spool.cpp
build webhook_url_fuzz tests/fuzz/webhook_url_fuzz.cpp gateway/webhook_url.cpp
build price_book_fuzz tests/fuzz/price_book_fuzz.cpp billing/price_book.cpp billing/pricing.cpp \
  billing/plan_terms.cpp core/json_dom.cpp core/json_text.cpp core/error.cpp
build rating_event_fuzz tests/fuzz/rating_event_fuzz.cpp billing/rating.cpp billing/period_pricing.cpp \
  billing/plan_terms.cpp \
  billing/price_book.cpp billing/pricing.cpp core/json_dom.cpp core/json_text.cpp core/error.cpp
build worst_case_fuzz tests/fuzz/worst_case_fuzz.cpp metering/worst_case.cpp billing/credits.cpp \
  metering/budgets/credit_rate.cpp \
  billing/price_book.cpp billing/pricing.cpp core/json_dom.cpp core/json_text.cpp core/error.cpp
build http1_parser_fuzz tests/fuzz/http1_parser_fuzz.cpp core/http1_parser.cpp core/http_request.cpp
build batch_input_fuzz tests/fuzz/batch_input_fuzz.cpp gateway/batch_input.cpp core/json_dom.cpp \
  core/json_text.cpp core/error.cpp
check_failures
run_target() {
  local target=$1
  mkdir -p "$out/corpus-$target"
  # Seeds (tests/fuzz/seeds/TARGET) start a target whose inputs are hard to find from nothing.
  if [ -d "tests/fuzz/seeds/$target" ]; then cp -n "tests/fuzz/seeds/$target"/* "$out/corpus-$target"/; fi
  local log="$out/$target.log"
  if ! "$out/$target" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$out/$target-" "$out/corpus-$target" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target FAILED (see $log)"
    return 1
  fi
  local execs
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  echo "fuzz: $target ok, $execs executions in ${seconds}s"
}
for target in json_dom_fuzz sse_fuzz openai_request_fuzz tokenizer_fuzz query_params_fuzz spool_fuzz \
  webhook_url_fuzz price_book_fuzz rating_event_fuzz batch_input_fuzz worst_case_fuzz http1_parser_fuzz; do
  spawn run_target "$target"
done
check_failures
