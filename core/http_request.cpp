// The handlers' request: see http_request.hpp.
#include "core/http_request.hpp"

#include <algorithm>

#include "core/http1_parser.hpp"

namespace tollgate::http {
namespace bhttp = boost::beast::http;

request::span request::append(std::string_view s) {
  const span out{static_cast<std::uint32_t>(text_.size()), static_cast<std::uint32_t>(s.size())};
  text_.append(s);
  return out;
}

request::request(bhttp::verb method, std::string_view target, unsigned version)
    : method_(method), version_(version) {
  method_at_ = append(bhttp::to_string(method));
  target_at_ = append(target);
}

request::request(const http1::request_head& head) : version_(head.version) {
  std::size_t bytes = head.method.size() + head.target.size();
  for (const http1::field& f : head.headers()) bytes += f.name.size() + f.value.size();
  text_.reserve(bytes);
  fields_.reserve(head.field_count);
  method_at_ = append(head.method);
  target_at_ = append(head.target);
  method_ = bhttp::string_to_verb(head.method);
  for (const http1::field& f : head.headers()) {
    const span name = append(f.name);
    fields_.push_back({name, append(f.value)});
  }
}

std::string_view request::operator[](std::string_view name) const {
  for (const field_spans& f : fields_) {
    if (http1::iequals(view(f.name), name)) return view(f.value);
  }
  return {};
}

std::string_view request::operator[](bhttp::field name) const {
  return (*this)[std::string_view(bhttp::to_string(name))];
}

std::vector<std::pair<std::string_view, std::string_view>> request::fields() const {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  out.reserve(fields_.size());
  for (const field_spans& f : fields_) out.emplace_back(view(f.name), view(f.value));
  return out;
}

void request::set(std::string_view name, std::string_view value) {
  std::erase_if(fields_, [&](const field_spans& f) { return http1::iequals(view(f.name), name); });
  const span name_at = append(name);
  fields_.push_back({name_at, append(value)});
}

void request::set(bhttp::field name, std::string_view value) {
  set(std::string_view(bhttp::to_string(name)), value);
}

}  // namespace tollgate::http
