// The credit store: credit grants and token bundles (made idempotently, each with its account
// and funding transfer), balances, transfers, expiry, the credit and bundle lines an invoice
// applies, auto top-up settings and their webhooks, in PostgreSQL (sql/010_credits.sql,
// sql/026_token_bundles.sql, docs/CREDITS.md). Every method is a coroutine on the billing executor
// using the shared connection pool; objects come back as the JSON the admin API shows.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "billing/invoicing.hpp"
#include "billing/pg.hpp"
#include "billing/store_common.hpp"
#include "metering/budgets/budget_rows.hpp"

namespace tollgate::billing {

class credit_store {
 public:
  explicit credit_store(pg::pool& pool) : pool_(pool) {}

  struct credit_grant_spec {
    std::string tenant_id;
    std::string kind;  // purchased | promotional
    std::int64_t amount_micros = 0;
    std::optional<std::int64_t> price_paid_micros;  // purchased only
    std::int64_t effective_at_s = 0;
    std::optional<std::int64_t> expires_at_s;
    int priority = 0;
    std::optional<std::vector<std::string>> models;  // none: every model
    std::string memo;
    std::string id;  // optional, for idempotent retries (cg_ + letters/digits); "" = new
  };
  // Grants credit: the grant, its account and the funding transfer, in one transaction. The
  // same id given again returns the grant made the first time if it is the same grant (409
  // otherwise).
  boost::asio::awaitable<store_result> grant_credit(credit_grant_spec spec, std::string actor);
  struct token_bundle_spec {
    std::string tenant_id;
    std::string model, token_class;
    std::int64_t tokens = 0;
    std::int64_t price_per_million_micros = 0;
    std::int64_t effective_at_s = 0;
    std::optional<std::int64_t> expires_at_s;
    int priority = 0;
    std::string memo;
    std::string id;  // as for grants
    std::vector<std::string> project_ids;  // shared with these projects only; empty: all
  };
  // Makes a token bundle (a grant of kind bundle: docs/CREDITS.md), idempotent on its id.
  boost::asio::awaitable<store_result> grant_bundle(token_bundle_spec spec, std::string actor);
  boost::asio::awaitable<store_result> get_credit_grant(std::string id);

  struct auto_top_up_spec {
    std::string tenant_id;
    std::int64_t threshold_micros = 0, amount_micros = 0, price_paid_micros = 0;
    std::optional<std::string> webhook_url;  // none: top-ups are recorded only
  };
  // Sets a tenant's auto top-up (a webhook secret is made with the first URL and kept); the
  // answer is as get_auto_top_up's.
  boost::asio::awaitable<store_result> set_auto_top_up(auto_top_up_spec spec, std::string actor);
  // {"object":"auto_top_up", tenant_id, threshold_micros, amount_micros, price_paid_micros,
  // webhook_url, webhook_secret, top_ups: [{id, grant_id, balance_before_micros,
  // balance_after_micros, status, attempts, created_at}] newest first}; 404 when none is set.
  boost::asio::awaitable<store_result> get_auto_top_up(std::string tenant_id);
  // Top-up webhooks due, leased for `lease_ms` (as budget_store::claim_alerts), and the outcome
  // of an attempt.
  using top_up_webhooks = std::vector<metering::alert_delivery>;
  boost::asio::awaitable<pg::db_result<top_up_webhooks>> claim_top_up_webhooks(
      int limit, std::int64_t lease_ms);
  boost::asio::awaitable<pg::db_result<bool>> finish_top_up_webhook(std::string id,
                                                                    std::string status,
                                                                    std::string error,
                                                                    std::int64_t retry_in_ms);
  // The invoice's token_bundle lines of `period`: per bundle, the tokens its drawdowns of the
  // period paid for and their amount; allowance_rollover_in lines likewise for the rollover
  // grants drawn (amount 0), and allowance_rollover_out lines for the period's own unused
  // allowance that rolled over (quantity: the tokens; amount 0). Draws for late usage of an
  // earlier period whose invoice was finalized before they were stored come as lines of their
  // own naming that period (less what other finalized invoices listed of them), as the credits
  // they are paid with come with applied_credits.
  boost::asio::awaitable<basic_result<std::vector<fee_line>, store_error>> bundle_lines(
      std::string tenant_id, std::string period);
  // A tenant's grants with their balances, in drawdown order, and the totals.
  boost::asio::awaitable<store_result> credit_balance(std::string tenant_id);
  // A tenant's credit transfers with their entries, newest first.
  boost::asio::awaitable<store_result> credit_transfers(std::string tenant_id, page_request page);
  // Moves the balances of grants expired by `at_s` to breakage; {"expired": n}.
  boost::asio::awaitable<store_result> expire_credits(std::int64_t at_s);
  // The credit an invoice of `period` applies, in drawdown order: the period's drawdowns and
  // true-ups per grant, then credit drawn by late usage of earlier finalized periods after
  // they were finalized (less what other finalized invoices have applied of it). The row type
  // is the invoice arithmetic's (billing/invoicing).
  using applied_credit = billing::applied_credit;
  boost::asio::awaitable<basic_result<std::vector<applied_credit>, store_error>> applied_credits(
      std::string tenant_id, std::string period);

 private:
  pg::pool& pool_;
};

}  // namespace tollgate::billing
