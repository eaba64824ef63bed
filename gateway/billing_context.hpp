// What the gateway's handlers need from the billing module when a database is configured: the
// billing thread's executor (where every PostgreSQL coroutine runs), the account store, the
// ledger writer and the Batch API's store. Handlers run on I/O threads and hop to the billing executor with on_billing().
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "billing/account_store.hpp"
#include "billing/batch_store.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/store_aliases.hpp"  // TEMPORARY shim (branch routes), deleted at the store split

namespace tollgate::gateway {

struct billing_context {
  boost::asio::any_io_executor executor;
  billing::account_store* store = nullptr;
  // TEMPORARY shim (branch routes): the split stores' fields, all pointing at `store` until the
  // store split (branch stores) types them and removes `store`. The admin and finance handlers
  // use only these.
  billing::tenant_store* tenants = nullptr;
  billing::budget_store* budgets = nullptr;
  billing::usage_queries* usage = nullptr;
  billing::plan_store* plans = nullptr;
  billing::invoice_store* invoices = nullptr;
  billing::credit_store* credits = nullptr;
  // end of the TEMPORARY shim
  billing::ledger_writer* ledger = nullptr;
  billing::batch_store* batches = nullptr;
};

// Runs `op` (a coroutine of the account store) on the billing executor and resumes the caller
// on its own executor with the result.
template <class T>
boost::asio::awaitable<T> on_billing(const billing_context& ctx, boost::asio::awaitable<T> op) {
  return boost::asio::co_spawn(ctx.executor, std::move(op), boost::asio::use_awaitable);
}

}  // namespace tollgate::gateway
