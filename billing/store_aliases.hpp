// TEMPORARY (branch `routes`, deleted when it meets the account store split of branch `stores`):
// the names of the split stores, all still the one account_store here, so that the admin and
// finance handlers are written against the new names. At the merge each include of this header
// becomes the include of the store header(s) the file uses.
#pragma once
#include "billing/account_store.hpp"

namespace tollgate::billing {

using tenant_store = account_store;
using budget_store = account_store;
using usage_queries = account_store;
using plan_store = account_store;
using invoice_store = account_store;
using credit_store = account_store;

}  // namespace tollgate::billing
