// A small Prometheus metrics registry that renders the text exposition format (version 0.0.4).
// Counters, gauges and latency histograms; each metric is a family with fixed label names whose
// children are created on first use. Updating a child is a relaxed atomic add; look children up
// once and keep the reference on hot paths (or per I/O thread in a child_cache).
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::metrics {

class counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class gauge {
 public:
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  void sub(std::int64_t n) { value_.fetch_sub(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Observations in integer microseconds, exposed in seconds (Prometheus base unit).
class latency_histogram {
 public:
  // Upper bounds in microseconds: 0.5 ms .. 60 s.
  static constexpr std::array<std::uint64_t, 16> bounds_us = {
      500,     1'000,   2'500,     5'000,     10'000,    25'000,     50'000,     100'000,
      250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000, 30'000'000, 60'000'000};

  void observe_us(std::int64_t us);
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  std::uint64_t sum_us() const { return sum_us_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, bounds_us.size()> buckets_{};  // non-cumulative
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_us_{0};
};

enum class metric_type { counter, gauge, histogram };

// Type-erased view of a family for rendering.
class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}
  virtual ~family_base() = default;
  virtual void render(std::string& out) const = 0;
  const std::string& name() const { return name_; }

 protected:
  void render_header(std::string& out, metric_type type) const;
  // Renders `{a="x",b="y"}` (plus an optional extra label) for a child's label values.
  void render_labels(std::string& out, const std::vector<std::string>& values,
                     std::string_view extra_name = {}, std::string_view extra_value = {}) const;
  // One `name{labels} value` line.
  void render_sample(std::string& out, const std::vector<std::string>& labels,
                     std::int64_t value) const;

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
};

// Orders label-value lists; transparent so lookups need no allocation.
struct label_values_less {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](const auto& x, const auto& y) { return std::string_view(x) < std::string_view(y); });
  }
};

template <class Metric>
class family final : public family_base {
 public:
  using family_base::family_base;

  // Returns the child for these label values (created on first use). The reference stays valid
  // for the registry's lifetime. The number of values must equal the number of label names.
  Metric& with(std::initializer_list<std::string_view> label_values) {
    std::lock_guard lock(mutex_);
    auto it = children_.find(label_values);
    if (it == children_.end()) {
      it = children_
               .emplace(std::vector<std::string>(label_values.begin(), label_values.end()),
                        std::make_unique<Metric>())
               .first;
    }
    return *it->second;
  }
  Metric& get() { return with({}); }

  void render(std::string& out) const override;

 private:
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, label_values_less> children_;
};

// One thread's memo of a family's children: a hot path that picks a child by label values on
// every request (an upstream and an outcome, say) finds it here without taking the family's
// mutex, which every I/O thread shares, after the first use. Not thread-safe: keep one per
// I/O thread.
template <class Metric>
class child_cache {
 public:
  explicit child_cache(family<Metric>& f) : family_(&f) {}
  Metric& with(std::initializer_list<std::string_view> label_values) {
    auto it = children_.find(label_values);
    if (it == children_.end()) {
      it = children_
               .emplace(std::vector<std::string>(label_values.begin(), label_values.end()),
                        &family_->with(label_values))
               .first;
    }
    return *it->second;
  }

 private:
  family<Metric>* family_;
  std::map<std::vector<std::string>, Metric*, label_values_less> children_;
};

template <>
void family<counter>::render(std::string& out) const;
template <>
void family<gauge>::render(std::string& out) const;
template <>
void family<latency_histogram>::render(std::string& out) const;

class registry {
 public:
  family<counter>& add_counter(std::string name, std::string help,
                               std::vector<std::string> labels = {});
  family<gauge>& add_gauge(std::string name, std::string help,
                           std::vector<std::string> labels = {});
  family<latency_histogram>& add_histogram(std::string name, std::string help,
                                           std::vector<std::string> labels = {});

  // Runs `collect` before each render: it sets gauges from state kept elsewhere (an
  // endpoint's health, which changes with time alone). It must not call back into the registry's
  // rendering, and must outlive the registry's use.
  void add_collector(std::function<void()> collect);

  // The whole registry in the Prometheus text format.
  std::string render() const;

 private:
  template <class M>
  family<M>& add(std::string name, std::string help, std::vector<std::string> labels);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<family_base>> families_;
  std::vector<std::function<void()>> collectors_;
};

// Content-Type for the text exposition format.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace tollgate::metrics
