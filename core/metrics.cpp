// Prometheus text-format registry: see metrics.hpp. Checked by `promtool check metrics` in tests.
#include "core/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace tollgate::metrics {
namespace {

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// Microseconds as seconds with exact decimal digits (no floating point).
void append_seconds_from_us(std::string& out, std::uint64_t us) {
  append_uint(out, us / 1'000'000);
  std::uint64_t frac = us % 1'000'000;
  if (frac == 0) return;
  char digits[7] = "000000";
  for (int i = 5; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  int len = 6;
  while (len > 0 && digits[len - 1] == '0') --len;
  out.push_back('.');
  out.append(digits, static_cast<std::size_t>(len));
}

void append_escaped_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
}

void append_escaped_help(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
}

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

}  // namespace

void latency_histogram::observe_us(std::int64_t us) {
  const auto v = static_cast<std::uint64_t>(us < 0 ? 0 : us);
  std::size_t i = 0;
  while (i < bounds_us.size() && v > bounds_us[i]) ++i;
  if (i < bounds_us.size()) buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(v, std::memory_order_relaxed);
}

void family_base::render_header(std::string& out, metric_type type) const {
  out += "# HELP ";
  out += name_;
  out.push_back(' ');
  append_escaped_help(out, help_);
  out += "\n# TYPE ";
  out += name_;
  switch (type) {
    case metric_type::counter:
      out += " counter\n";
      break;
    case metric_type::gauge:
      out += " gauge\n";
      break;
    case metric_type::histogram:
      out += " histogram\n";
      break;
  }
}

void family_base::render_labels(std::string& out, const std::vector<std::string>& values,
                                std::string_view extra_name, std::string_view extra_value) const {
  if (values.empty() && extra_name.empty()) return;
  out.push_back('{');
  bool first = true;
  for (std::size_t i = 0; i < values.size() && i < label_names_.size(); ++i) {
    if (!first) out.push_back(',');
    first = false;
    out += label_names_[i];
    out += "=\"";
    append_escaped_label_value(out, values[i]);
    out.push_back('"');
  }
  if (!extra_name.empty()) {
    if (!first) out.push_back(',');
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out.push_back('"');
  }
  out.push_back('}');
}

void family_base::render_sample(std::string& out, const std::vector<std::string>& labels,
                                std::int64_t value) const {
  out += name_;
  render_labels(out, labels);
  out.push_back(' ');
  append_int(out, value);
  out.push_back('\n');
}

template <>
void family<counter>::render(std::string& out) const {
  render_header(out, metric_type::counter);
  std::lock_guard lock(mutex_);
  for (const auto& [labels, c] : children_) {
    render_sample(out, labels, static_cast<std::int64_t>(c->value()));
  }
}

template <>
void family<gauge>::render(std::string& out) const {
  render_header(out, metric_type::gauge);
  std::lock_guard lock(mutex_);
  for (const auto& [labels, g] : children_) render_sample(out, labels, g->value());
}

template <>
void family<latency_histogram>::render(std::string& out) const {
  render_header(out, metric_type::histogram);
  std::lock_guard lock(mutex_);
  for (const auto& [labels, h] : children_) {
    // Read the buckets first; count is the +Inf bucket and must not be below their sum.
    std::uint64_t cumulative = 0;
    std::string le;
    for (std::size_t i = 0; i < latency_histogram::bounds_us.size(); ++i) {
      cumulative += h->bucket(i);
      le.clear();
      append_seconds_from_us(le, latency_histogram::bounds_us[i]);
      out += name_;
      out += "_bucket";
      render_labels(out, labels, "le", le);
      out.push_back(' ');
      append_uint(out, cumulative);
      out.push_back('\n');
    }
    const std::uint64_t count = std::max(h->count(), cumulative);
    out += name_;
    out += "_bucket";
    render_labels(out, labels, "le", "+Inf");
    out.push_back(' ');
    append_uint(out, count);
    out.push_back('\n');
    out += name_;
    out += "_sum";
    render_labels(out, labels);
    out.push_back(' ');
    append_seconds_from_us(out, h->sum_us());
    out.push_back('\n');
    out += name_;
    out += "_count";
    render_labels(out, labels);
    out.push_back(' ');
    append_uint(out, count);
    out.push_back('\n');
  }
}

template <class M>
family<M>& registry::add(std::string name, std::string help, std::vector<std::string> labels) {
  if (!valid_metric_name(name)) throw std::invalid_argument("invalid metric name: " + name);
  for (const auto& l : labels) {
    if (!valid_metric_name(l) || l == "le") {
      throw std::invalid_argument("invalid label name: " + l);
    }
  }
  std::lock_guard lock(mutex_);
  for (const auto& f : families_) {
    if (f->name() == name) throw std::invalid_argument("metric registered twice: " + name);
  }
  auto f = std::make_unique<family<M>>(std::move(name), std::move(help), std::move(labels));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

family<counter>& registry::add_counter(std::string name, std::string help,
                                       std::vector<std::string> labels) {
  return add<counter>(std::move(name), std::move(help), std::move(labels));
}

family<gauge>& registry::add_gauge(std::string name, std::string help,
                                   std::vector<std::string> labels) {
  return add<gauge>(std::move(name), std::move(help), std::move(labels));
}

family<latency_histogram>& registry::add_histogram(std::string name, std::string help,
                                                   std::vector<std::string> labels) {
  return add<latency_histogram>(std::move(name), std::move(help), std::move(labels));
}

void registry::add_collector(std::function<void()> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string registry::render() const {
  std::string out;
  out.reserve(4096);
  std::lock_guard lock(mutex_);
  for (const auto& c : collectors_) c();
  for (const auto& f : families_) f->render(out);
  return out;
}

}  // namespace tollgate::metrics
