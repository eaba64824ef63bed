// tollctl's shared pieces (the CLI is gateway/tollctl.cpp and gateway/tollctl_admin.cpp): one
// HTTP call to a running gateway, flag reading, the usage text, and the admin and finance
// commands.
#pragma once
#include <boost/beast/http/verb.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::tollctl {

struct http_result {
  unsigned status = 0;
  std::string body;
  std::string error;  // transport error, empty on success
};

// One HTTP request to base_url + path, synchronously, with a 10 s timeout. A POST carries
// `body` as JSON; `token` goes in `Authorization: Bearer`.
http_result http_call(boost::beast::http::verb method, const std::string& base_url,
                      const std::string& path, const std::string& body = {},
                      const std::string& token = {});

// The value after `flag` (both taken out of `args`), else $`env`, else `fallback`.
std::string flag_or_env(std::vector<std::string>& args, const char* flag, const char* env,
                        const char* fallback);
// Whether `flag` is in `args` (taken out).
bool take_flag(std::vector<std::string>& args, const char* flag);
// Prints the usage text to stderr; returns 2.
int usage();

// tollctl tenants|projects|keys|budgets|price-books|plans|credits|costs|invoices|batches|audit|
// usage|events (tollctl_admin.cpp): the admin and finance APIs.
bool is_api_command(std::string_view command);
int api_command(const std::string& command, std::vector<std::string> args);

}  // namespace tollgate::tollctl
