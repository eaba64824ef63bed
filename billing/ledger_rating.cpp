// The ledger writer's transaction body: reading the journal's records back, rating the events
// on the period accumulators, drawing credit and storing the rows (see ledger_writer.hpp).
#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <tuple>

#include "billing/bundle_reads.hpp"
#include "billing/ledger_record.hpp"
#include "billing/ledger_writer.hpp"
#include "billing/period_pricing.hpp"
#include "billing/tag_sets.hpp"
#include "core/json_dom.hpp"
#include "metering/budgets/cover.hpp"

namespace tollgate::billing {

namespace net = boost::asio;

net::awaitable<pg::db_result<std::int64_t>> ledger_writer::rate_and_store(const std::string& rows,
                                                                          bool may_repeat) {
  static const std::string staging_sql =
      std::string("COPY usage_staging (") + usage_event_columns + ") FROM STDIN";
  static const std::string store_sql =
      std::string("COPY usage_events (") + usage_event_columns +
      ", cost_micros, price_book_id, price_book_version, request_fee_micros, context_band," +
      " credit_micros, " + bundle_token_columns + ") FROM STDIN";
  corrections_.clear();
  bundle_paid_.clear();
  // The journal's records (any version the writer reads) become COPY lines and their headers.
  std::vector<std::string_view> lines;
  std::vector<ledger_record> headers;
  std::deque<std::string> completed;  // lines changed here: missing columns added, tags' ids
  std::vector<bool> has_tags;         // a line with the attribution columns, as written
  bool unreadable = false;
  for_each_ledger_line(rows, [&](std::string_view line) {
    auto rec = parse_ledger_record(line);
    if (!rec) {
      unreadable = true;
      return;
    }
    if (const auto missing = missing_columns_null(*rec); !missing.empty()) {
      completed.push_back(std::string(rec->copy_line).append(missing));
      lines.push_back(completed.back());
    } else {
      lines.push_back(rec->copy_line);
    }
    has_tags.push_back(!lacks_attribution(*rec));
    headers.push_back(*rec);
  });
  if (unreadable) {
    // A record of a format this release does not know (written by a newer one): the whole
    // batch is kept aside for an operator, like rows the database refuses.
    co_return pg::db_error{"a ledger record of an unknown format version", "22000", false};
  }
  // The journal's tags (JSON) become the ids of their sets (billing/tag_sets.hpp).
  auto tagged = co_await tag_sets_.substitute(conn_, lines, has_tags, completed);
  if (!tagged) co_return tagged.error();
  std::vector<std::optional<rating_event>> events;
  events.reserve(lines.size());
  for (const auto line : lines) events.push_back(parse_rating_event(line));

  if (may_repeat) {
    // Drop the rows that are stored already: they are neither stored nor rated again.
    std::string copy_rows;
    for (const auto line : lines) copy_rows.append(line).push_back('\n');
    auto copied = co_await conn_.copy_in(staging_sql, copy_rows);
    if (!copied) co_return copied.error();
    auto present = co_await conn_.query(
        "SELECT s.request_id FROM usage_staging s JOIN usage_events e"
        " ON e.tenant_id = s.tenant_id AND e.occurred_at = s.occurred_at"
        " AND e.request_id = s.request_id");
    if (!present) co_return present.error();
    {
      // Rows stored already, and a row the batch holds twice (a record journaled again), are
      // dropped: each request id is stored and rated once.
      std::set<std::string, std::less<>> stored;
      for (int i = 0; i < present->size(); ++i) stored.emplace(present->text(i, 0));
      std::size_t kept = 0;
      for (std::size_t i = 0; i < lines.size(); ++i) {
        // A row too damaged to read its request id is left to the database to refuse.
        if (events[i] && !stored.insert(events[i]->request_id).second) continue;
        if (kept != i) {  // a self-move would empty the event
          lines[kept] = lines[i];
          headers[kept] = headers[i];
          events[kept] = std::move(events[i]);
        }
        ++kept;
      }
      lines.resize(kept);
      headers.resize(kept);
      events.resize(kept);
    }
  }
  if (lines.empty()) co_return 0;

  std::map<std::string, plan_history> plans;
  // Per event, the plan of its period (null: its tenant has none).
  std::vector<const rating_plan*> event_plans(events.size(), nullptr);
  std::vector<std::optional<rated_event>> rated(events.size());
  bundle_paid_.resize(events.size());
  if (settings_.rate_events) {
    std::set<std::string> tenants;
    for (const auto& e : events) {
      if (e) tenants.insert(e->tenant_id);
    }
    auto loaded = co_await plans_.load(conn_, tenants);
    if (!loaded) co_return loaded.error();
    plans = std::move(*loaded);
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (!events[i]) continue;
      if (const auto it = plans.find(events[i]->tenant_id); it != plans.end()) {
        event_plans[i] = plan_for_period(it->second, period_of(events[i]->occurred_at_s));
      }
    }
    if (!plans.empty()) {
      // An event held on a credit_only mirror may draw from the pooled bundles only the cover
      // its settlement counted on the pools (none, if its hold asked for none).
      std::vector<std::optional<pooled_cover>> covers(events.size());
      for (std::size_t i = 0; i < events.size(); ++i) {
        const ledger_record& h = headers[i];
        covers[i] =
            pooled_cover_of(!h.credit_counters.empty(), h.settled_credit_micros, h.cover_tokens);
      }
      auto done = co_await rate_batch(events, event_plans, plans, covers, rated);
      if (!done) co_return done.error();
    }
  }
  std::vector<std::int64_t> credit(events.size(), 0);
  const bool costs = std::any_of(rated.begin(), rated.end(),
                                 [](const auto& r) { return r && r->cost_micros > 0; });
  const bool bundled = std::any_of(bundle_paid_.begin(), bundle_paid_.end(),
                                   [](const auto& b) { return !b.empty(); });
  if (costs || bundled) {
    auto drawn = co_await draw_credits(events, rated, credit);
    if (!drawn) co_return drawn.error();
  }

  collect_corrections(events, event_plans, headers, rated, credit);
  std::string out;
  out.reserve(rows.size() + lines.size() * 40);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += lines[i];
    if (rated[i]) {
      out.push_back('\t');
      pg::append_int(out, rated[i]->cost_micros);
      out.push_back('\t');
      pg::append_copy_text(out, event_plans[i]->book_id);
      out.push_back('\t');
      pg::append_int(out, rated[i]->version);
      out.push_back('\t');
      pg::append_int(out, rated[i]->request_fee_micros);
      out.push_back('\t');
      pg::append_int(out, rated[i]->band_above);
    } else {
      out += "\t\\N\t\\N\t\\N\t\\N\t\\N";
    }
    if (credit[i] > 0) {
      out.push_back('\t');
      pg::append_int(out, credit[i]);
    } else {
      out += "\t\\N";
    }
    // The tokens bundles paid for, per class (the invoice takes them out of the totals).
    std::int64_t by_class[token_class_count] = {};
    for (const auto& b : bundle_paid_[i]) by_class[b.token_class] += b.tokens;
    for (const auto n : by_class) {
      if (n > 0) {
        out.push_back('\t');
        pg::append_int(out, n);
      } else {
        out += "\t\\N";
      }
    }
    out.push_back('\n');
  }
  co_return co_await conn_.copy_in(store_sql, out);
}

// What each rated event's spend counters were settled with against what it was billed: the
// difference goes to Redis once the batch is committed (on_spend_corrections).
void ledger_writer::collect_corrections(const std::vector<std::optional<rating_event>>& events,
                                        const std::vector<const rating_plan*>& plans,
                                        const std::vector<ledger_record>& headers,
                                        const std::vector<std::optional<rated_event>>& rated,
                                        const std::vector<std::int64_t>& credit) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    const ledger_record& h = headers[i];
    if (!events[i] || !rated[i] || h.settled_spend_micros < 0) continue;
    const auto add = [&](std::string_view counters, std::int64_t billed) {
      const std::int64_t delta = billed - h.settled_spend_micros;
      if (delta == 0) return;
      for_each_piece(counters, ',', [&](std::string_view key) {
        corrections_.push_back(spend_correction{events[i]->tenant_id, std::string(key), delta});
      });
    };
    add(h.spend_counters, rated[i]->cost_micros);
    // The credit_only mirror counts money credit only: bundles are not in its limit. A hold
    // covered by bundles settled its credit counter with the uncovered cost.
    std::int64_t by_bundles = 0;
    for (const auto& b : bundle_paid_[i]) by_bundles += b.amount_micros;
    if (h.settled_credit_micros >= 0) {
      const std::int64_t delta = credit[i] - by_bundles - h.settled_credit_micros;
      for_each_piece(h.credit_counters, ',', [&](std::string_view key) {
        if (delta != 0) corrections_.push_back({events[i]->tenant_id, std::string(key), delta});
      });
    } else {
      add(h.credit_counters, credit[i] - by_bundles);
    }
  }
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i] && rated[i]) {
      collect_cover_corrections(*events[i], plans[i], headers[i], bundle_paid_[i]);
    }
  }
}

// The coverage pools of a credit_only tenant (docs/CREDITS.md) count what its pooled bundles
// drew: each event sends the pool of its model and class what they drew less what a covered
// hold's settlement counted there (only pools that exist take it, so other tenants' draws
// change nothing). An event held on the mirror draws at most that cover (rate_batch), so its
// correction only gives back covered tokens that something drawn first paid (the allowance, a
// bundle of some projects, a rollover grant); events held without the mirror draw freely and
// count here.
void ledger_writer::collect_cover_corrections(const rating_event& e, const rating_plan* plan,
                                              const ledger_record& h,
                                              const std::vector<bundle_paid>& paid) {
  // The pools are those of the model the bundles are drawn by: the book's entry.
  const bool any_model = plan != nullptr && plan->scope == tier_scope::all_models;
  const std::string model = any_model ? std::string("*") : e.model;
  const auto cover =
      pooled_cover_of(!h.credit_counters.empty(), h.settled_credit_micros, h.cover_tokens);
  const int classes[2] = {tc_input, tc_output};
  for (int c = 0; c < 2; ++c) {
    std::int64_t drawn = 0;
    for (const auto& b : paid) {
      if (b.pooled && b.token_class == classes[c]) drawn += b.tokens;
    }
    const std::int64_t settled = !cover ? 0 : c == 0 ? cover->input : cover->output;
    if (drawn == settled) continue;
    corrections_.push_back(
        {e.tenant_id, metering::cover_pool_key(e.tenant_id, model, c == 1), drawn - settled});
  }
}

// Token banking: per tenant and period whose interactive usage the batch rates, the earlier
// periods' allowances that may roll into it (their accumulators are locked with the others).
static std::map<std::pair<std::string, std::string>, std::vector<rollover_source>>
rollovers_of(const std::vector<std::optional<rating_event>>& events,
             const std::map<std::string, plan_history>& histories,
             const std::set<std::pair<std::string, std::string>>& settled) {
  std::map<std::pair<std::string, std::string>, std::vector<rollover_source>> out;
  for (const auto& [tenant, history] : histories) {
    const bool rolls = std::any_of(history.begin(), history.end(),
                                   [](const rating_plan& p) { return p.terms.rolls_over(); });
    if (!rolls) continue;
    for (const auto& e : events) {
      if (!e || e->batch || e->tenant_id != tenant) continue;
      std::pair<std::string, std::string> key{tenant, period_of(e->occurred_at_s)};
      if (settled.count(key) != 0) continue;
      auto [it, fresh] = out.try_emplace(std::move(key));
      if (fresh) it->second = rollover_sources(history, tenant, it->first.second);
    }
  }
  return out;
}

// The accumulators as parameters of the statements below, one array per column (unnest turns
// them back into rows): their keys, and with `with_state` where each stands.
static std::vector<pg::param> accumulator_arrays(const accumulator_map& accumulators,
                                                 bool with_state) {
  std::vector<std::string_view> tenants, periods, models, classes, batches;
  std::string positions = "{", charged = "{", rolled = "{";
  for (const auto& [key, state] : accumulators) {
    const auto& [tenant, period, model, token_class, batch] = key;
    tenants.push_back(tenant);
    periods.push_back(period);
    models.push_back(model);
    classes.push_back(token_class);
    batches.push_back(batch ? "t" : "f");
    if (!with_state) continue;
    for (std::string* a : {&positions, &charged, &rolled}) {
      if (a->size() > 1) a->push_back(',');
    }
    pg::append_int(positions, state.position);
    pg::append_int(charged, state.charged_micros);
    if (state.rolled_over) {
      pg::append_int(rolled, *state.rolled_over);
    } else {
      rolled += "NULL";
    }
  }
  std::vector<pg::param> params;
  for (const auto* column : {&tenants, &periods, &models, &classes, &batches}) {
    params.emplace_back(pg::text_array(*column));
  }
  if (with_state) {
    for (std::string* a : {&positions, &charged, &rolled}) params.emplace_back(*a + '}');
  }
  return params;
}

// The statements on the accumulators, their rows given by accumulator_arrays (text compared in
// the collations of rating_accumulators' columns).
static const char* const create_accumulators_sql =
    "INSERT INTO rating_accumulators"
    " (tenant_id, period, model, token_class, batch, position, charged_micros)"
    " SELECT t COLLATE \"C\", p, m COLLATE \"C\", c, b, 0, 0"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[])"
    " AS k(t, p, m, c, b) ORDER BY 1, 2, 3, 4, 5 ON CONFLICT DO NOTHING";
static const char* const lock_accumulators_sql =
    "SELECT a.tenant_id, a.period, a.model, a.token_class, a.batch, a.position,"
    " a.charged_micros, a.rolled_over FROM rating_accumulators a"
    " JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[])"
    " AS k(t, p, m, c, b) ON a.tenant_id = k.t COLLATE \"C\" AND a.period = k.p"
    " AND a.model = k.m COLLATE \"C\" AND a.token_class = k.c AND a.batch = k.b"
    " ORDER BY 1, 2, 3, 4, 5 FOR UPDATE OF a";
static const char* const update_accumulators_sql =
    "UPDATE rating_accumulators a SET position = k.position,"
    " charged_micros = k.charged_micros, rolled_over = k.rolled_over, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::bigint[],"
    " $7::bigint[], $8::bigint[]) AS k(t, p, m, c, b, position, charged_micros, rolled_over)"
    " WHERE a.tenant_id = k.t COLLATE \"C\" AND a.period = k.p AND a.model = k.m COLLATE \"C\""
    " AND a.token_class = k.c AND a.batch = k.b";

net::awaitable<pg::db_result<bool>> ledger_writer::rate_batch(
    const std::vector<std::optional<rating_event>>& events,
    const std::vector<const rating_plan*>& plans,
    const std::map<std::string, plan_history>& histories,
    const std::vector<std::optional<pooled_cover>>& covers,
    std::vector<std::optional<rated_event>>& rated) {
  accumulator_map accumulators;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!events[i] || plans[i] == nullptr) continue;
    if (auto target = rating_target_of(*plans[i], *events[i])) {
      for (auto& key : target->keys) accumulators.try_emplace(std::move(key));
    }
  }
  if (accumulators.empty()) co_return true;
  auto rollovers = rollovers_of(events, histories, settled_);
  for (const auto& [tenant_period, sources] : rollovers) {
    for (const auto& s : sources) accumulators.try_emplace(s.key);
  }
  // Create the missing accumulators, then lock them all, in one order (no deadlock between
  // gateways), and read where they stand.
  // (The parameters are named: GCC 12 mishandles temporaries inside a co_await.)
  std::vector<pg::param> keys = accumulator_arrays(accumulators, false);
  auto created = co_await conn_.query_prepared(create_accumulators_sql, keys);
  if (!created) co_return created.error();
  auto locked = co_await conn_.query_prepared(lock_accumulators_sql, std::move(keys));
  if (!locked) co_return locked.error();
  for (int i = 0; i < locked->size(); ++i) {
    const accumulator_key key{std::string(locked->text(i, 0)), std::string(locked->text(i, 1)),
                              std::string(locked->text(i, 2)), std::string(locked->text(i, 3)),
                              locked->boolean(i, 4)};
    accumulator_state& state = accumulators[key];
    state.position = locked->int64(i, 5);
    state.charged_micros = locked->int64(i, 6);
    if (!locked->is_null(i, 7)) state.rolled_over = locked->int64(i, 7);
  }
  auto bundles = co_await lock_bundles(events);
  if (!bundles) co_return bundles.error();
  std::vector<rollover_grant> rollover_grants;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!events[i] || plans[i] == nullptr) continue;
    // The first interactive event of a tenant's period settles the earlier periods' rollovers
    // (events before it in the batch, of those periods, still saw their whole allowance).
    const auto& e = *events[i];
    const auto r = rollovers.empty() || e.batch
                       ? rollovers.end()
                       : rollovers.find({e.tenant_id, period_of(e.occurred_at_s)});
    if (r != rollovers.end()) {
      for (const auto& source : r->second) {
        auto grant = settle_rollover(r->first.first, source, accumulators[source.key]);
        if (!grant) continue;
        rollover_grants.push_back({r->first.first, source.from_period, *grant});
        insert_in_drawdown_order((*bundles)[r->first.first], std::move(*grant));
      }
      settling_.insert(r->first);
      rollovers.erase(r);
    }
    const auto it = bundles->find(events[i]->tenant_id);
    if (it == bundles->end()) {
      rated[i] = rate_event(*plans[i], *events[i], accumulators);
      continue;
    }
    // The tokens the tenant's bundles pay for are not rated; the bundles pay their value.
    rating_event rest = *events[i];
    const auto draws = cover_with_bundles(*plans[i], rest, accumulators, it->second, covers[i]);
    rated[i] = rate_event(*plans[i], rest, accumulators);
    for (const auto& d : draws) {
      bundle_paid_[i].push_back({it->second[d.bundle].grant_id, d.token_class, d.tokens,
                                 d.amount_micros, it->second[d.bundle].pooled()});
      if (rated[i]) rated[i]->cost_micros += d.amount_micros;
    }
  }
  if (!rollover_grants.empty()) {
    auto made = co_await make_rollover_grants(rollover_grants);
    if (!made) co_return made.error();
  }
  std::vector<pg::param> positions = accumulator_arrays(accumulators, true);
  auto updated = co_await conn_.query_prepared(update_accumulators_sql, std::move(positions));
  if (!updated) co_return updated.error();
  co_return true;
}

net::awaitable<pg::db_result<bool>> ledger_writer::make_rollover_grants(
    const std::vector<rollover_grant>& unordered) {
  // In one order in every gateway (each grant moves its tenant's allowance account): two
  // writers never wait for each other's rows in opposite orders.
  std::vector<const rollover_grant*> grants;
  for (const auto& g : unordered) grants.push_back(&g);
  std::sort(grants.begin(), grants.end(), [](const rollover_grant* a, const rollover_grant* b) {
    return std::tie(a->tenant, a->bundle.grant_id) < std::tie(b->tenant, b->bundle.grant_id);
  });
  std::vector<std::string> ids, tenants, periods, models, classes, tokens, effective, expires;
  for (const auto* p : grants) {
    const rollover_grant& g = *p;
    ids.push_back(g.bundle.grant_id);
    tenants.push_back(g.tenant);
    periods.push_back(g.from_period);
    models.push_back(g.bundle.model);
    classes.push_back(token_class_names[g.bundle.token_class]);
    tokens.push_back(std::to_string(g.bundle.tokens));
    effective.push_back(std::to_string(g.bundle.effective_at_s));
    expires.push_back(std::to_string(g.bundle.expires_at_s.value_or(0)));
  }
  std::vector<pg::param> params;
  for (const auto* column : {&ids, &tenants, &periods, &models, &classes, &tokens, &effective,
                             &expires}) {
    params.emplace_back(pg::text_array(*column));
  }
  auto made = co_await conn_.query(
      "SELECT tollgate_grant_rollover(u.id, u.t, u.p, u.m, u.c, u.n::bigint,"
      " to_timestamp(u.e::bigint), to_timestamp(u.x::bigint))"
      " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
      " $7::text[], $8::text[]) AS u(id, t, p, m, c, n, e, x)",
      std::move(params));
  if (!made) co_return made.error();
  co_return true;
}

net::awaitable<pg::db_result<std::map<std::string, std::vector<token_bundle>>>>
ledger_writer::lock_bundles(const std::vector<std::optional<rating_event>>& events) {
  std::set<std::string> tenants;
  for (const auto& e : events) {
    if (e && !e->batch) tenants.insert(e->tenant_id);
  }
  if (tenants.empty()) co_return std::map<std::string, std::vector<token_bundle>>{};
  std::vector<pg::param> params;
  params.emplace_back(pg::text_array(tenants));
  const std::string sql = bundles_sql(true);  // named: it outlives the co_await
  auto found = co_await conn_.query_prepared(sql, std::move(params));
  if (!found) co_return found.error();
  co_return bundles_of(*found);
}

net::awaitable<pg::db_result<bool>> ledger_writer::draw_credits(
    const std::vector<std::optional<rating_event>>& events,
    const std::vector<std::optional<rated_event>>& rated, std::vector<std::int64_t>& credit) {
  std::set<std::string> tenants;
  bool bundles_paid = false;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (rated[i] && rated[i]->cost_micros > 0) tenants.insert(events[i]->tenant_id);
    bundles_paid = bundles_paid || !bundle_paid_[i].empty();
  }
  std::vector<pg::param> params;
  params.emplace_back(pg::text_array(tenants));
  // Money grants (bundles were drawn while rating), locked in drawdown order, the same in
  // every gateway.
  auto found = co_await conn_.query_prepared(
      "SELECT g.tenant_id, g.id, a.balance_micros, floor(extract(epoch from g.effective_at)),"
      " floor(extract(epoch from g.expires_at)), array_to_json(g.models)::text"
      " FROM credit_accounts a JOIN credit_grants g ON g.id = a.grant_id"
      " WHERE g.tenant_id = ANY($1::text[]) AND a.balance_micros > 0 AND g.kind <> 'bundle'"
      " ORDER BY g.tenant_id, g.priority, g.expires_at NULLS LAST, g.effective_at, g.id"
      " FOR UPDATE OF a",
      std::move(params));
  if (!found) co_return found.error();
  if (found->size() == 0 && !bundles_paid) co_return true;
  std::map<std::string, std::vector<credit_grant_balance>> grants;  // by tenant, drawdown order
  for (int i = 0; i < found->size(); ++i) {
    credit_grant_balance g;
    g.grant_id = std::string(found->text(i, 1));
    g.balance_micros = found->int64(i, 2);
    g.effective_at_s = found->int64(i, 3);
    if (!found->is_null(i, 4)) g.expires_at_s = found->int64(i, 4);
    if (!found->is_null(i, 5)) g.models = string_list(found->text(i, 5));
    grants[std::string(found->text(i, 0))].push_back(std::move(g));
  }
  // One transfer per tenant and period: each grant drawn gives, the usage account takes.
  // Bundles move tokens beside the money.
  struct moved {
    std::int64_t micros = 0, tokens = 0;
  };
  struct transfer {
    std::string id;
    std::map<std::string, moved> by_grant;
    moved total;
    bool money = false;      // money grants were drawn (auto top-up may follow)
    std::int64_t at_s = 0;   // the latest event drawn
  };
  std::map<std::pair<std::string, std::string>, transfer> transfers;  // tenant, period
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (!rated[i]) continue;
    const rating_event& e = *events[i];
    const std::string period = period_of(e.occurred_at_s);
    const auto transfer_of = [&]() -> transfer& {
      transfer& t = transfers[{e.tenant_id, period}];
      if (t.id.empty()) t.id = "draw:" + e.tenant_id + ":" + period + ":" + e.request_id;
      return t;
    };
    std::int64_t rest = rated[i]->cost_micros;
    for (const auto& b : bundle_paid_[i]) {
      transfer& t = transfer_of();
      moved& m = t.by_grant[b.grant_id];
      m.micros += b.amount_micros;
      m.tokens += b.tokens;
      t.total.micros += b.amount_micros;
      t.total.tokens += b.tokens;
      credit[i] += b.amount_micros;
      rest -= b.amount_micros;
    }
    const auto it = grants.find(e.tenant_id);
    if (rest <= 0 || it == grants.end()) continue;
    const auto draws = draw_credit(it->second, e.model, e.occurred_at_s, rest);
    if (draws.empty()) continue;
    transfer& t = transfer_of();
    t.money = true;
    t.at_s = std::max(t.at_s, e.occurred_at_s);
    for (const auto& d : draws) {
      t.by_grant[it->second[d.grant].grant_id].micros += d.amount_micros;
      t.total.micros += d.amount_micros;
      credit[i] += d.amount_micros;
    }
  }
  if (transfers.empty()) co_return true;
  std::string transfer_rows;
  std::string entry_rows;
  for (const auto& [key, t] : transfers) {
    pg::append_copy_text(transfer_rows, t.id);
    transfer_rows.push_back('\t');
    pg::append_copy_text(transfer_rows, key.first);
    transfer_rows += "\tdrawdown\t" + key.second + "\n";
    const auto tokens_text = [](std::int64_t n) {
      return n == 0 ? std::string("\\N") : std::to_string(n);
    };
    for (const auto& [grant_id, m] : t.by_grant) {
      pg::append_copy_text(entry_rows, t.id);
      entry_rows += "\tgrant:";
      pg::append_copy_text(entry_rows, grant_id);
      entry_rows += "\t" + std::to_string(-m.micros) + "\t" + tokens_text(-m.tokens) + "\n";
    }
    pg::append_copy_text(entry_rows, t.id);
    entry_rows += "\tusage:";
    pg::append_copy_text(entry_rows, key.first);
    entry_rows += "\t" + std::to_string(t.total.micros) + "\t" + tokens_text(t.total.tokens) + "\n";
  }
  static const std::string transfers_sql =
      "COPY credit_transfers (id, tenant_id, kind, period) FROM STDIN";
  static const std::string entries_sql =
      "COPY credit_entries (transfer_id, account_id, amount_micros, tokens) FROM STDIN";
  auto booked = co_await conn_.copy_in(transfers_sql, transfer_rows);
  if (!booked) co_return booked.error();
  auto entered = co_await conn_.copy_in(entries_sql, entry_rows);
  if (!entered) co_return entered.error();
  // Auto top-up: a drawdown that took a tenant's credit below its threshold makes the top-up
  // grant once (sql/026_token_bundles.sql).
  std::vector<std::string> top_up_tenants, top_up_transfers, top_up_at;
  for (const auto& [key, t] : transfers) {
    if (!t.money) continue;
    top_up_tenants.push_back(key.first);
    top_up_transfers.push_back(t.id);
    top_up_at.push_back(std::to_string(t.at_s));
  }
  if (top_up_tenants.empty()) co_return true;
  std::vector<pg::param> top_up_params;
  top_up_params.emplace_back(pg::text_array(top_up_tenants));
  top_up_params.emplace_back(pg::text_array(top_up_transfers));
  top_up_params.emplace_back(pg::text_array(top_up_at));
  auto topped = co_await conn_.query_prepared(
      "SELECT tollgate_credit_auto_top_up(u.t, u.x, to_timestamp(u.a::bigint))"
      " FROM unnest($1::text[], $2::text[], $3::text[]) AS u(t, x, a)"
      " WHERE EXISTS (SELECT 1 FROM credit_auto_top_ups c WHERE c.tenant_id = u.t)",
      std::move(top_up_params));
  if (!topped) co_return topped.error();
  co_return true;
}

}  // namespace tollgate::billing
