// Prometheus text rendering: families, labels, escaping, histograms in seconds.
#include <catch2/catch.hpp>

#include "core/metrics.hpp"

using namespace tollgate::metrics;

TEST_CASE("counters and gauges render with HELP, TYPE and labels") {
  registry r;
  auto& c = r.add_counter("t_requests_total", "Requests.", {"route", "status"});
  c.with({"/v1/x", "200"}).inc(3);
  c.with({"a\"b\\c\nd", "500"}).inc();
  r.add_gauge("t_open", "Open now.").get().set(-2);
  const std::string text = r.render();
  CHECK(text.find("# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\n") == 0);
  CHECK(text.find("t_requests_total{route=\"/v1/x\",status=\"200\"} 3\n") != std::string::npos);
  CHECK(text.find("t_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"500\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("# TYPE t_open gauge\nt_open -2\n") != std::string::npos);
}

TEST_CASE("histograms are cumulative, in seconds, with +Inf, sum and count") {
  registry r;
  auto& h = r.add_histogram("t_latency_seconds", "Latency.").get();
  h.observe_us(400);         // <= 0.0005
  h.observe_us(1'000);       // <= 0.001 (bounds are inclusive)
  h.observe_us(70'000'000);  // beyond the last bound
  const std::string text = r.render();
  CHECK(text.find("t_latency_seconds_bucket{le=\"0.0005\"} 1\n") != std::string::npos);
  CHECK(text.find("t_latency_seconds_bucket{le=\"0.001\"} 2\n") != std::string::npos);
  CHECK(text.find("t_latency_seconds_bucket{le=\"60\"} 2\n") != std::string::npos);
  CHECK(text.find("t_latency_seconds_bucket{le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("t_latency_seconds_sum 70.0014\n") != std::string::npos);
  CHECK(text.find("t_latency_seconds_count 3\n") != std::string::npos);
}

TEST_CASE("invalid or duplicate names are refused at registration") {
  registry r;
  r.add_counter("ok_total", "x");
  CHECK_THROWS(r.add_counter("ok_total", "again"));
  CHECK_THROWS(r.add_counter("9bad", "x"));
  CHECK_THROWS(r.add_counter("bad-name", "x"));
  CHECK_THROWS(r.add_counter("fine_total", "x", {"le"}));
}

TEST_CASE("a child cache hands out the family's own children") {
  registry reg;
  auto& fam = reg.add_counter("t_cached_total", "help", {"a", "b"});
  child_cache<counter> cache(fam);
  counter& first = cache.with({"x", "1"});
  CHECK(&first == &fam.with({"x", "1"}));
  CHECK(&cache.with({"x", "1"}) == &first);
  CHECK(&cache.with({"x", "2"}) != &first);
  cache.with({"x", "1"}).inc(3);
  fam.with({"x", "1"}).inc();
  CHECK(first.value() == 4);
  CHECK(reg.render().find("t_cached_total{a=\"x\",b=\"1\"} 4") != std::string::npos);
}
