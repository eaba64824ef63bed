// Request ids: every request gets one (a client-supplied x-request-id is kept when valid), and
// it follows the request to the upstream, the usage record and the response headers.
#pragma once
#include <string>
#include <string_view>

namespace tollgate {

// "req_" followed by 32 lowercase hex digits from a per-thread random generator.
std::string new_request_id();

// A client-supplied id is kept if it is 1..128 characters of [A-Za-z0-9._:-].
bool is_valid_client_request_id(std::string_view id);

}  // namespace tollgate
