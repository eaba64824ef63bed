// The invoice store: invoices in PostgreSQL (docs/PRICING.md). A draft is written from the
// ledger (the plan store prices the period, the credit store says what credit applies,
// billing/invoicing does the arithmetic), finalized once (numbered, immutable from then on),
// and read back. Every method is a coroutine on the billing executor using the shared
// connection pool; invoices come back as the JSON the API shows.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <string>

#include "billing/credit_store.hpp"
#include "billing/pg.hpp"
#include "billing/plan_store.hpp"
#include "billing/store_common.hpp"

namespace tollgate::billing {

class invoice_store {
 public:
  invoice_store(pg::pool& pool, plan_store& plans, credit_store& credits)
      : pool_(pool), plans_(plans), credits_(credits) {}

  // Writes the period's draft invoice from the ledger (again: same id, same content for the
  // same ledger); a finalized invoice is returned unchanged.
  boost::asio::awaitable<store_result> draft_invoice(std::string tenant_id, std::string period);
  // The period's finalized invoice (404 if it has none).
  boost::asio::awaitable<store_result> finalized_invoice(std::string tenant_id,
                                                         std::string period);
  // Finalizes the draft: numbered (TG-000001, ...), immutable from then on. An invoice
  // finalized before is returned as it is.
  boost::asio::awaitable<store_result> finalize_invoice(std::string tenant_id,
                                                        std::string period, std::string actor);
  // Drafts the period's invoice of one tenant ("" = every tenant with a plan), and with
  // `finalize` finalizes the drafts, which is refused before the period's end + `grace_s`.
  boost::asio::awaitable<store_result> run_invoices(std::string period, std::string tenant_id,
                                                    bool finalize, std::int64_t now_s,
                                                    std::int64_t grace_s, std::string actor);
  boost::asio::awaitable<store_result> get_invoice(std::string id);
  boost::asio::awaitable<store_result> list_invoices(std::string tenant_id, std::string period,
                                                     page_request page);

 private:
  pg::pool& pool_;
  plan_store& plans_;
  credit_store& credits_;
};

}  // namespace tollgate::billing
