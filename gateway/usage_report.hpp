// Usage reports in the shape of OpenAI's organization usage API, shared by the finance API
// (any tenant) and GET /v1/usage (the caller's own tenant):
//   {"object":"page","data":[{"object":"bucket","start_time","end_time","results":[...]}],
//    "has_more","next_page"}
// each result extended with the attribution groupings (end_user, session_id, tags) and the cost
// (cost_micros, cost_minor, currency, unrated_requests); and as CSV, streamed window by window
// so that a year of data never sits in memory. The parameters: gateway/usage_params.hpp.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>
#include <vector>

#include "billing/usage_queries.hpp"
#include "core/http_server.hpp"
#include "gateway/billing_context.hpp"
#include "gateway/usage_params.hpp"

namespace tollgate::gateway {

// Answers the request: one JSON page, or the whole range as chunked CSV.
boost::asio::awaitable<void> send_usage_report(http::exchange& ex, const billing_context& billing,
                                               usage_request request,
                                               std::string request_id);

// Each row's cost in the minor unit of its currency (nullopt without one): within a bucket and
// currency the amounts add up to the rows' cost_micros total rounded half up, each row floored
// and the missing units given to the largest remainders (as invoice lines are).
std::vector<std::optional<std::int64_t>> usage_cost_minor(
    const std::vector<billing::usage_row>& rows);

}  // namespace tollgate::gateway
