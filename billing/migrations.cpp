// Schema migrations: see migrations.hpp. Blocking libpq is fine here: this runs before the
// gateway serves, or from the command line.
#include "billing/migrations.hpp"

#include <libpq-fe.h>

#include <memory>

namespace tollgate::billing {
namespace {

// An arbitrary constant naming Tollgate's migration lock among the cluster's advisory locks.
constexpr const char* migration_lock_key = "7407201";

struct conn_closer {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;

std::string trimmed(const char* text) {
  std::string s = text == nullptr ? "" : text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs `sql`; returns "" or the error message.
std::string run(PGconn* c, const std::string& sql, std::string* first_value = nullptr) {
  PGresult* r = PQexec(c, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  std::string err;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    err = trimmed(PQresultErrorMessage(r));
  } else if (first_value != nullptr && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
    *first_value = PQgetvalue(r, 0, 0);
  }
  PQclear(r);
  return err;
}

}  // namespace

basic_result<migrate_report, std::string> migrate(const std::string& conninfo) {
  conn_ptr c{PQconnectdb(conninfo.c_str())};
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    return std::string("cannot connect to the database: ") +
           trimmed(c ? PQerrorMessage(c.get()) : "out of memory");
  }
  if (auto e = run(c.get(), "SET client_min_messages = warning; SET TimeZone = 'UTC'"); !e.empty()) {
    return e;
  }
  if (auto e = run(c.get(), std::string("SELECT pg_advisory_lock(") + migration_lock_key + ")");
      !e.empty()) {
    return "taking the migration lock: " + e;
  }
  if (auto e = run(c.get(),
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version integer PRIMARY KEY, name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())");
      !e.empty()) {
    return "creating schema_migrations: " + e;
  }
  std::string current = "0";
  if (auto e = run(c.get(), "SELECT coalesce(max(version), 0) FROM schema_migrations", &current);
      !e.empty()) {
    return "reading schema_migrations: " + e;
  }
  migrate_report report;
  report.from_version = std::stoi(current);
  report.to_version = report.from_version;
  const int newest = migrations().empty() ? 0 : migrations().back().version;
  if (report.from_version > newest) {
    return "the database schema is at version " + current +
           ", newer than this binary knows (" + std::to_string(newest) +
           "); upgrade the gateway";
  }
  for (const auto& m : migrations()) {
    if (m.version <= report.from_version) continue;
    std::string sql = std::string("BEGIN;\n") + m.sql +
                      "\nINSERT INTO schema_migrations (version, name) VALUES (" +
                      std::to_string(m.version) + ", '" + m.name + "');\nCOMMIT;";
    if (auto e = run(c.get(), sql); !e.empty()) {
      run(c.get(), "ROLLBACK");
      return std::string("migration ") + m.name + " failed: " + e;
    }
    report.applied.emplace_back(m.name);
    report.to_version = m.version;
  }
  // Partitions for last month through three months ahead.
  if (auto e = run(c.get(),
                   "SELECT tollgate_ensure_usage_partitions("
                   "((now() AT TIME ZONE 'UTC') - interval '1 month')::date, 5)");
      !e.empty()) {
    return "creating usage partitions: " + e;
  }
  run(c.get(), std::string("SELECT pg_advisory_unlock(") + migration_lock_key + ")");
  return report;
}

}  // namespace tollgate::billing
