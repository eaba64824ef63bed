// The reservation's worst case: every prompt and copy, within the context, never wrapping.
#include <catch2/catch.hpp>
#include <vector>

#include "metering/worst_case.hpp"

using namespace tollgate::metering;

TEST_CASE("worst case: prompts, copies and the rest of the context") {
  const std::vector<std::int64_t> one{100};
  worst_case_request r;
  r.prompt_tokens = one;
  r.max_tokens = 50;
  r.copies = 3;
  r.context_tokens = 1000;
  auto w = worst_case_of(r);
  REQUIRE(w);
  CHECK(w->prompt_tokens == 300);
  CHECK(w->completion_tokens == 150);
  CHECK(w->total() == 450);

  r.max_tokens = -1;  // no max_tokens: the rest of the context, for each copy
  w = worst_case_of(r);
  REQUIRE(w);
  CHECK(w->completion_tokens == 3 * 900);

  const std::vector<std::int64_t> prompts{10, 20, 30};
  r.prompt_tokens = prompts;
  r.max_tokens = 5;
  r.copies = 2;
  w = worst_case_of(r);
  REQUIRE(w);
  CHECK(w->prompt_tokens == 2 * 60);
  CHECK(w->completion_tokens == 2 * 15);
}

TEST_CASE("worst case: a prompt that does not fit the context is refused, whatever max_tokens") {
  const std::vector<std::int64_t> prompts{10, 990, 5};
  worst_case_request r;
  r.prompt_tokens = prompts;
  r.context_tokens = 1000;
  for (const std::int64_t max : {std::int64_t{11}, std::int64_t{1} << 62, INT64_MAX}) {
    r.max_tokens = max;
    std::size_t at = 99;
    CHECK_FALSE(worst_case_of(r, &at));
    CHECK(at == (max == 11 ? 1u : 0u));  // the first prompt that cannot fit
  }
  r.max_tokens = 10;
  CHECK(worst_case_of(r));
}

TEST_CASE("worst case: sums saturate instead of wrapping") {
  const std::vector<std::int64_t> huge(4, INT64_MAX / 2);
  worst_case_request r;
  r.prompt_tokens = huge;
  r.max_tokens = 0;
  r.copies = 1'000'000;
  r.context_tokens = INT64_MAX;
  auto w = worst_case_of(r);
  REQUIRE(w);
  CHECK(w->prompt_tokens == reservation_amount_max);
  CHECK(w->total() == reservation_amount_max);
  CHECK(saturating_add(reservation_amount_max, 1) == reservation_amount_max);
  CHECK(saturating_mul(INT64_MAX, INT64_MAX) == reservation_amount_max);
  CHECK(saturating_add(-5, 3) == 3);  // negative inputs count as zero
}
