// What the gateway's handlers need from the billing module when a database is configured: the
// billing thread's executor (where every PostgreSQL coroutine runs), the stores (declared here
// only: a handler includes the header of each store it calls), the ledger writer and the Batch
// API's store. Handlers run on I/O threads and hop to the billing executor with on_billing().
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "billing/batch_store.hpp"
#include "billing/ledger_writer.hpp"

namespace tollgate::billing {
class tenant_store;
class budget_store;
class usage_queries;
class plan_store;
class invoice_store;
class credit_store;
class refusal_report;
}  // namespace tollgate::billing

namespace tollgate::gateway {

struct billing_context {
  boost::asio::any_io_executor executor;
  billing::tenant_store* tenants = nullptr;
  billing::budget_store* budgets = nullptr;
  billing::usage_queries* usage = nullptr;
  billing::plan_store* plans = nullptr;
  billing::invoice_store* invoices = nullptr;
  billing::credit_store* credits = nullptr;
  billing::ledger_writer* ledger = nullptr;
  billing::batch_store* batches = nullptr;
  billing::refusal_report* refusals = nullptr;  // the console's refusals over time
};

// Runs `op` (a coroutine of a billing store) on the billing executor and resumes the caller
// on its own executor with the result.
template <class T>
boost::asio::awaitable<T> on_billing(const billing_context& ctx, boost::asio::awaitable<T> op) {
  return boost::asio::co_spawn(ctx.executor, std::move(op), boost::asio::use_awaitable);
}

}  // namespace tollgate::gateway
