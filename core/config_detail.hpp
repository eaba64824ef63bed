// What the configuration parser's files share (core/config.cpp, core/config_routing.cpp): the
// error helper, the typed getters, and the routing sections' steps. Not part of core's
// interface: only those two files include it.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/config.hpp"

namespace tollgate::config_detail {

using json = nlohmann::json;

// Throws the config_error "config <path>: <what>".
[[noreturn]] void fail(const std::string& path, const std::string& what);
// Overlays `src` on `dst` for the keys that exist in `dst`; unknown keys are errors.
void overlay_known(json& dst, const json& src, const std::string& path);
std::uint64_t get_uint(const json& obj, const std::string& path, const char* key, std::uint64_t min,
                       std::uint64_t max);
bool get_bool(const json& obj, const std::string& path, const char* key);
std::string get_string(const json& obj, const std::string& path, const char* key);

// The routing settings' defaults: a model's fallback fields, a virtual model entry.
json model_fallback_defaults();
json virtual_model_defaults();
// A model entry's `fallbacks` and `fallback_on_status` (names are checked later, by
// resolve_fallbacks, once every model and virtual model is known).
void parse_model_fallbacks(const json& m, const std::string& path, model_config& model);
// The `virtual_models` section, after the models: rules, targets, weights, names.
void parse_virtual_models(const json& merged, gateway_config& cfg);
// Checks every model's fallbacks (configured, real models; no cycle) and works out each
// model's fallback_chain. After parse_virtual_models.
void resolve_fallbacks(gateway_config& cfg);

}  // namespace tollgate::config_detail
