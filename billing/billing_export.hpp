// Exports for the billing systems a finance team already runs (docs/EXPORTS.md): an invoice as
// Stripe invoice items (JSON in the shape of Stripe's `POST /v1/invoiceitems` parameters, or
// CSV with one column per parameter, named as Stripe's form encoding names them), and usage
// events as CloudEvents in the shape OpenMeter ingests. Pure text-to-text conversions of what
// the finance API already answers; no database.
#pragma once
#include <string>
#include <string_view>

namespace tollgate::billing {

// The invoice (invoice_store's JSON) as Stripe invoice items, one per line, late adjustment
// and credit applied (negative), each in the currency's minor units: they sum to the invoice's
// total_due_minor. `customer` is the tenant id (map it to the Stripe customer id when syncing);
// metadata keeps the invoice, tenant and line identity and the exact micro-unit amount.
// {"object":"list","data":[...]}; an unreadable invoice gives an empty list.
std::string stripe_invoice_items_json(std::string_view invoice_json);
// The same items as CSV: customer,currency,amount,description,period[start],period[end],
// metadata[...] columns.
std::string stripe_invoice_items_csv(std::string_view invoice_json);

// Usage events (the finance API's usage_event objects, as a JSON array) as a CloudEvents batch
// (a JSON array, `application/cloudevents-batch+json`): one event per request with
// specversion 1.0, id the request id, source "tollgate", type "tollgate.usage", subject the
// tenant id, time the event's occurred_at, and data its model, endpoint, token counts, cost and
// attribution. OpenMeter de-duplicates on (source, id), so sending a page twice counts it once.
std::string usage_cloudevents_json(std::string_view usage_events_json);

}  // namespace tollgate::billing
