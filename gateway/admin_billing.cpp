// The admin API's billing handlers: price books and their versions, tenant plans and seats,
// credit grants and balances, credit expiry, invoice runs, and every tenant's batches. A plan or
// a grant tells every gateway to reload the tenant's budgets (the credit_only mirror is one).
#include <cstdio>
#include <ctime>

#include "billing/credits.hpp"
#include "billing/token_bundles.hpp"
#include "billing/plan_terms.hpp"
#include "billing/price_book.hpp"
#include "billing/credit_store.hpp"
#include "billing/invoice_store.hpp"
#include "billing/plan_store.hpp"
#include "core/json_text.hpp"
#include "core/limits.hpp"
#include "gateway/admin_routes.hpp"

namespace tollgate::gateway::routes {
namespace {

using limits::unix_seconds_max;

constexpr std::int64_t seconds_per_day = 86'400;

// "YYYY-MM-DD" of the UTC day holding `unix_s`.
std::string utc_day(std::int64_t unix_s) {
  const std::time_t secs = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

// A credit grant to `tenant` from the body, or the 400 that refuses it.
result<billing::credit_store::credit_grant_spec> credit_grant_of(body_reader& body,
                                                                 const std::string& tenant,
                                                                 std::int64_t now_s) {
  body.reject_unknown({"id", "kind", "amount_micros", "price_paid_micros", "effective_at",
                       "expires_at", "priority", "models", "memo"});
  auto grant_id = body.name("id", false);
  auto grant_kind = body.choice("kind", {"purchased", "promotional"}, true);
  auto amount = body.nullable_int("amount_micros", 1, billing::credit_micros_max);
  auto paid = body.nullable_int("price_paid_micros", 0, billing::credit_micros_max);
  auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
  auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
  auto priority = body.nullable_int("priority", 0, limits::credit_priority_max);
  auto models = body.models("models");
  auto memo = body.name("memo", false);
  if (!body.ok()) return body.error();
  billing::credit_store::credit_grant_spec spec;
  spec.tenant_id = tenant;
  spec.kind = *grant_kind;
  spec.effective_at_s = effective && *effective ? **effective : now_s;
  if (expires && *expires) spec.expires_at_s = **expires;
  if (priority && *priority) spec.priority = static_cast<int>(**priority);
  if (models && *models) spec.models = **models;
  spec.memo = memo.value_or("");
  if (paid && *paid) spec.price_paid_micros = **paid;
  if (!amount || !*amount) {
    body.fail("amount_micros is required: a positive integer (micro-units).", "amount_micros");
  } else if ((spec.kind == "purchased") != spec.price_paid_micros.has_value()) {
    body.fail(
        "price_paid_micros is required for a purchased grant and not allowed for a "
        "promotional one.",
        "price_paid_micros");
  } else if (spec.expires_at_s && *spec.expires_at_s <= spec.effective_at_s) {
    body.fail("expires_at must be after effective_at.", "expires_at");
  } else if (grant_id && !billing::is_credit_grant_id(*grant_id)) {
    body.fail("id must be cg_ and 1 to 64 letters, digits, '-' or '_'.", "id");
  }
  if (!body.ok()) return body.error();
  spec.amount_micros = **amount;
  spec.id = grant_id.value_or("");
  return spec;
}

// A token bundle for `tenant` from the body, or the 400 that refuses it.
result<billing::credit_store::token_bundle_spec> token_bundle_of(body_reader& body,
                                                                 const std::string& tenant,
                                                                 std::int64_t now_s) {
  body.reject_unknown({"id", "model", "token_class", "tokens", "price_per_million_micros",
                       "effective_at", "expires_at", "priority", "memo", "project_ids"});
  auto grant_id = body.name("id", false);
  auto model = body.name("model", true);
  auto projects = body.name_list("project_ids", "project ids");
  static_assert(billing::token_class_count == 7, "a bundle may be of every token class");
  auto token_class = body.choice("token_class",
                                 {"input", "cached_input", "cache_write", "image_input",
                                  "audio_input", "output", "audio_output"},
                                 true);
  auto tokens = body.nullable_int("tokens", 1, billing::bundle_tokens_max);
  auto price = body.nullable_int("price_per_million_micros", 1,
                                 billing::bundle_price_per_million_micros_max);
  auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
  auto expires = body.nullable_int("expires_at", 0, unix_seconds_max);
  auto priority = body.nullable_int("priority", 0, limits::credit_priority_max);
  auto memo = body.name("memo", false);
  if (!body.ok()) return body.error();
  billing::credit_store::token_bundle_spec spec;
  spec.tenant_id = tenant;
  spec.model = *model;
  spec.token_class = *token_class;
  spec.effective_at_s = effective && *effective ? **effective : now_s;
  if (expires && *expires) spec.expires_at_s = **expires;
  if (priority && *priority) spec.priority = static_cast<int>(**priority);
  spec.memo = memo.value_or("");
  if (projects && *projects) spec.project_ids = std::move(**projects);
  if (spec.project_ids.size() > billing::bundle_projects_max) {
    body.fail("project_ids names at most 100 projects.", "project_ids");
  } else if (projects && *projects && spec.project_ids.empty()) {
    body.fail("project_ids must name at least one project (null or absent: every project).",
              "project_ids");
  } else if (!tokens || !*tokens) {
    body.fail("tokens is required: a positive integer.", "tokens");
  } else if (!price || !*price) {
    body.fail("price_per_million_micros is required: a positive integer (micro-units per 1M "
              "tokens).",
              "price_per_million_micros");
  } else if (billing::bundle_value_micros(**tokens, **price) < 1 ||
             billing::bundle_value_micros(**tokens, **price) > billing::credit_micros_max) {
    body.fail("tokens x price_per_million_micros / 10^6 must come to 1 .. 10^15 micro-units.",
              "tokens");
  } else if (spec.expires_at_s && *spec.expires_at_s <= spec.effective_at_s) {
    body.fail("expires_at must be after effective_at.", "expires_at");
  } else if (grant_id && !billing::is_credit_grant_id(*grant_id)) {
    body.fail("id must be cg_ and 1 to 64 letters, digits, '-' or '_'.", "id");
  }
  if (!body.ok()) return body.error();
  spec.tokens = **tokens;
  spec.price_per_million_micros = **price;
  spec.id = grant_id.value_or("");
  return spec;
}

}  // namespace

// ---- price books -----------------------------------------------------------------------------

handler_result create_price_book(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"name", "currency", "tier_mode", "tier_scope", "effective_at", "models"});
  billing::plan_store::price_book_spec spec;
  auto name = body.name("name", true);
  auto currency = body.currency("currency");
  auto mode = body.choice("tier_mode", {"graduated", "volume"}, false);
  auto scope = body.choice("tier_scope", {"model", "all_models"}, false);
  auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
  spec.tier_mode = mode.value_or("graduated");
  spec.tier_scope = scope.value_or("model");
  auto prices =
      body.prices(billing::tier_mode_of(spec.tier_mode), billing::tier_scope_of(spec.tier_scope));
  if (!body.ok()) co_return co_await c.fail(body.error());
  spec.name = *name;
  spec.currency = *currency;
  spec.effective_at_s = effective && *effective ? **effective : c.now_s();
  spec.prices_json = std::move(*prices);
  co_await c.reply(c.billing().plans->create_price_book(std::move(spec), c.actor), 201);
}

handler_result list_price_books(route_call& c) {
  co_await c.reply(c.billing().plans->list_price_books(c.page));
}

handler_result get_price_book(route_call& c) {
  co_await c.reply(c.billing().plans->get_price_book(c.id));
}

// The new prices are checked against the book's own tier mode and scope.
handler_result add_price_book_version(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"effective_at", "models"});
  auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
  if (!body.ok()) co_return co_await c.fail(body.error());
  auto book_kind = co_await c.run(c.billing().plans->price_book_kind(c.id));
  if (!book_kind) co_return co_await c.fail(to_api_error(book_kind.error()));
  auto prices = body.prices(book_kind->mode, book_kind->scope);
  if (!body.ok()) co_return co_await c.fail(body.error());
  const std::int64_t at = effective && *effective ? **effective : c.now_s();
  co_await c.reply(c.billing().plans->add_price_book_version(c.id, at, std::move(*prices), c.actor),
                   201);
}

// ---- plans -----------------------------------------------------------------------------------

handler_result get_tenant_plan(route_call& c) {
  co_await c.reply(c.billing().plans->get_tenant_plan(c.id));
}

handler_result set_tenant_plan(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"price_book_id", "batch_discount_bp", "settlement_mode", "base_fee_micros",
                       "seat_fee_micros", "commitment_micros", "included_usage_micros",
                       "allowances"});
  billing::plan_store::plan_spec spec;
  auto book = body.name("price_book_id", true);
  auto discount = body.nullable_int("batch_discount_bp", 0, limits::basis_points_max);
  auto mode = body.choice("settlement_mode", {"credit_then_invoice", "credit_only"}, false);
  auto base_fee = body.nullable_int("base_fee_micros", 0, billing::plan_fee_micros_max);
  auto seat_fee = body.nullable_int("seat_fee_micros", 0, billing::seat_fee_micros_max);
  auto commitment = body.nullable_int("commitment_micros", 0, billing::plan_fee_micros_max);
  auto included_usage =
      body.nullable_int("included_usage_micros", 0, billing::plan_fee_micros_max);
  if (!body.ok()) co_return co_await c.fail(body.error());
  // The terms given, merged over the latest plan's by the store; 0, [] or null (written as
  // null, which the store drops) take a term away.
  json_object_writer terms;
  const auto add_amount = [&terms](std::string_view key, const auto& v) {
    if (!v) return;
    if (v->value_or(0) == 0) {
      terms.add_null(key);
    } else {
      terms.add(key, **v);
    }
  };
  add_amount("base_fee_micros", base_fee);
  add_amount("seat_fee_micros", seat_fee);
  add_amount("commitment_micros", commitment);
  add_amount("included_usage_micros", included_usage);
  if (body.has("allowances")) {
    auto allowances = billing::parse_allowances(body.member("allowances"));
    if (!allowances) {
      body.fail(allowances.error(), "allowances");
      co_return co_await c.fail(body.error());
    }
    if (allowances->empty()) {
      terms.add_null("allowances");
    } else {
      terms.add_raw("allowances", billing::allowances_json(*allowances));
    }
  }
  spec.terms_json = terms.finish();
  spec.tenant_id = c.id;
  spec.book_id = *book;
  if (discount && *discount) spec.batch_discount_bp = static_cast<int>(**discount);
  spec.settlement_mode = mode;
  auto outcome = co_await c.run(c.billing().plans->set_tenant_plan(std::move(spec), c.actor));
  if (outcome) c.budgets_changed(c.id);  // the settlement mode decides the credit_only mirror
  co_await c.reply(std::move(outcome));
}

// ---- seats ---------------------------------------------------------------------------------

handler_result get_tenant_seats(route_call& c) {
  co_await c.reply(c.billing().plans->get_tenant_seats(c.id, utc_day(c.now_s())));
}

handler_result set_tenant_seats(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"seats", "effective_at"});
  auto seats = body.nullable_int("seats", 0, billing::seats_max);
  auto effective = body.nullable_int("effective_at", 0, unix_seconds_max);
  if (!body.ok()) co_return co_await c.fail(body.error());
  if (!seats || !*seats) {
    body.fail("seats is required: an integer from 0 to " + std::to_string(billing::seats_max) +
                  ".",
              "seats");
    co_return co_await c.fail(body.error());
  }
  // A change applies from the start of its UTC day on; days already under way or past keep
  // the seats they had, except today's, which takes the change.
  const std::int64_t now_s = c.now_s();
  const std::int64_t at = effective && *effective ? **effective : now_s;
  if (at / seconds_per_day < now_s / seconds_per_day) {
    body.fail("effective_at must not be before today (UTC): seats are not changed for days past.",
              "effective_at");
    co_return co_await c.fail(body.error());
  }
  co_await c.reply(
      c.billing().plans->set_tenant_seats(c.id, utc_day(at), **seats, utc_day(now_s), c.actor));
}

// ---- credits ---------------------------------------------------------------------------------

handler_result grant_credit(route_call& c) {
  body_reader body = c.body();
  auto spec = credit_grant_of(body, c.id, c.now_s());
  if (!spec) co_return co_await c.fail(spec.error());
  auto outcome = co_await c.run(c.billing().credits->grant_credit(std::move(*spec), c.actor));
  if (outcome) c.budgets_changed(c.id);  // the credit_only mirror's limit grew
  co_await c.reply(std::move(outcome), 201);
}

handler_result grant_token_bundle(route_call& c) {
  body_reader body = c.body();
  auto spec = token_bundle_of(body, c.id, c.now_s());
  if (!spec) co_return co_await c.fail(spec.error());
  auto outcome = co_await c.run(c.billing().credits->grant_bundle(std::move(*spec), c.actor));
  if (outcome) c.budgets_changed(c.id);  // the credit_only mirror's coverage pools grew
  co_await c.reply(std::move(outcome), 201);
}

handler_result set_auto_top_up(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"threshold_micros", "amount_micros", "price_paid_micros", "webhook_url"});
  auto threshold = body.nullable_int("threshold_micros", 1, billing::credit_micros_max);
  auto amount = body.nullable_int("amount_micros", 1, billing::credit_micros_max);
  auto paid = body.nullable_int("price_paid_micros", 0, billing::credit_micros_max);
  auto webhook = body.webhook_url("webhook_url");
  if (body.ok() && (!threshold || !*threshold)) {
    body.fail("threshold_micros is required: a positive integer (micro-units).",
              "threshold_micros");
  } else if (body.ok() && (!amount || !*amount)) {
    body.fail("amount_micros is required: a positive integer (micro-units).", "amount_micros");
  } else if (body.ok() && (!paid || !*paid)) {
    body.fail("price_paid_micros is required: what the tenant pays for each top-up.",
              "price_paid_micros");
  }
  if (!body.ok()) co_return co_await c.fail(body.error());
  billing::credit_store::auto_top_up_spec spec;
  spec.tenant_id = c.id;
  spec.threshold_micros = **threshold;
  spec.amount_micros = **amount;
  spec.price_paid_micros = **paid;
  if (webhook && *webhook) spec.webhook_url = **webhook;
  co_await c.reply(c.billing().credits->set_auto_top_up(std::move(spec), c.actor));
}

handler_result get_auto_top_up(route_call& c) {
  co_await c.reply(c.billing().credits->get_auto_top_up(c.id));
}

handler_result get_credit_grant(route_call& c) {
  co_await c.reply(c.billing().credits->get_credit_grant(c.id));
}

handler_result tenant_credit_balance(route_call& c) {
  co_await c.reply(c.billing().credits->credit_balance(c.id));
}

handler_result tenant_credit_transfers(route_call& c) {
  co_await c.reply(c.billing().credits->credit_transfers(c.id, c.page));
}

handler_result expire_credits(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"at"});
  auto at = body.nullable_int("at", 0, unix_seconds_max);
  if (!body.ok()) co_return co_await c.fail(body.error());
  co_await c.reply(c.billing().credits->expire_credits(at && *at ? **at : c.now_s()));
}

// ---- invoices --------------------------------------------------------------------------------

handler_result run_invoices(route_call& c) {
  body_reader body = c.body();
  body.reject_unknown({"period", "tenant_id", "finalize"});
  auto period = body.name("period", true);
  auto tenant = body.name("tenant_id", false);
  const bool finalize = body.has("finalize") && body.flag("finalize");
  if (!body.ok()) co_return co_await c.fail(body.error());
  const auto grace_s = static_cast<std::int64_t>(c.env.invoices.grace_hours) * 3600;
  co_await c.reply(c.billing().invoices->run_invoices(*period, tenant.value_or(""), finalize,
                                                      c.now_s(), grace_s, c.actor));
}

// ---- batches (any tenant's) ------------------------------------------------------------------

handler_result list_batches(route_call& c) {
  co_await c.reply(
      c.billing().batches->list_all_batches(c.query.get("tenant_id").value_or(""), c.page));
}

handler_result get_batch(route_call& c) {
  co_await c.reply(c.billing().batches->get_any_batch(c.id));
}

}  // namespace tollgate::gateway::routes
