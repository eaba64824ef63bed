// Schema migrations: the numbered files of sql/, compiled in, applied in order by
// `tollgate migrate` (and by `make up`). Each runs in its own transaction; a session-level
// advisory lock makes gateways that start together apply each migration once. Usage partitions
// for the coming months are created at the end.
#pragma once
#include <string>
#include <vector>

#include "core/error.hpp"

namespace tollgate::billing {

struct migration {
  int version;
  const char* name;  // file name, e.g. "001_tenants_keys_usage.sql"
  const char* sql;
};

// All migrations, by ascending version (generated from sql/).
const std::vector<migration>& migrations();

struct migrate_report {
  int from_version = 0;
  int to_version = 0;
  std::vector<std::string> applied;  // file names applied by this run
};

// Connects with `conninfo` (blocking: start-up and CLI use only) and applies what is missing.
basic_result<migrate_report, std::string> migrate(const std::string& conninfo);

}  // namespace tollgate::billing
