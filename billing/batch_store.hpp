// The Batch API's storage in PostgreSQL (sql/011_batch_api.sql): files stored line by line,
// batches, and the batch lines the worker claims under a lease, runs and finishes. Every method
// is a coroutine on the billing executor using the shared pool; objects come back as the JSON
// the API shows (rendered by PostgreSQL, tollgate_file_json and tollgate_batch_json).
// Everything is scoped to a tenant: another tenant's file or batch does not exist.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "billing/pg.hpp"
#include "billing/store_common.hpp"

namespace tollgate::billing {

struct new_batch_line {
  int line_no = 0;
  std::string custom_id;
  std::string request_id;
  std::string body;  // the request body (JSON object text)
};

struct new_batch {
  std::string id;
  std::string tenant_id;
  std::string project_id;  // "" for a tenant-wide key
  std::string api_key_id;
  std::string endpoint;
  std::string input_file_id;
  std::string completion_window;  // "24h"
  std::string metadata_json;      // "" for none
  std::int64_t window_s = 86400;
  std::vector<new_batch_line> lines;
};

// A line the worker holds a lease on.
struct claimed_batch_line {
  std::string batch_id;
  int line_no = 0;
  std::string custom_id;
  std::string request_id;
  std::string body;
  std::int64_t occurred_at_ms = 0;  // the first claim's time: the usage event's occurred_at
  std::string tenant_id;
  std::string project_id;
  std::string api_key_id;
  std::string endpoint;
};

class batch_store {
 public:
  explicit batch_store(pg::pool& pool) : pool_(pool) {}

  // Stores an uploaded file: `lines` (each with its line end) are views into the caller's
  // body, read when this is called (before the returned operation runs).
  boost::asio::awaitable<store_result> create_file(std::string tenant_id, std::string filename,
                                                   std::string purpose, std::int64_t bytes,
                                                   std::vector<std::string_view> lines);
  boost::asio::awaitable<store_result> get_file(std::string tenant_id, std::string id);
  // Newest first; `purpose` "" for all.
  boost::asio::awaitable<store_result> list_files(std::string tenant_id, std::string purpose,
                                                  page_request page);
  // The file's bytes (an input file as uploaded; an output or error file from its batch).
  boost::asio::awaitable<store_result> file_content(std::string tenant_id, std::string id);
  boost::asio::awaitable<store_result> delete_file(std::string tenant_id, std::string id);
  // An input file's lines (with their line ends), for creating a batch from it. A 404 for an
  // unknown file, a 400 for one whose purpose is not "batch".
  boost::asio::awaitable<basic_result<std::vector<std::string>, store_error>> input_lines(
      std::string tenant_id, std::string file_id);

  boost::asio::awaitable<store_result> create_batch(new_batch batch);
  boost::asio::awaitable<store_result> get_batch(std::string tenant_id, std::string id);
  boost::asio::awaitable<store_result> list_batches(std::string tenant_id, page_request page);
  // validating / in_progress -> cancelling (then cancelled once no line runs). A 409 for a
  // batch that has already ended.
  boost::asio::awaitable<store_result> cancel_batch(std::string tenant_id, std::string id);
  // For operators (tollctl batches): any tenant's batches, newest first ("" for all tenants).
  boost::asio::awaitable<store_result> list_all_batches(std::string tenant_id, page_request page);
  boost::asio::awaitable<store_result> get_any_batch(std::string id);

  // ---- the worker ----------------------------------------------------------------------------
  // Leases the oldest runnable line of a running batch to `owner` for `lease_ms`.
  boost::asio::awaitable<pg::db_result<std::optional<claimed_batch_line>>> claim_line(
      std::string owner, std::int64_t lease_ms);
  // Stores a line's result (its output or error file line); false when the lease was lost.
  boost::asio::awaitable<pg::db_result<bool>> finish_line(std::string batch_id, int line_no,
                                                          std::string owner, bool failed,
                                                          std::string result);
  // Gives a line back to be run again after `delay_ms` (a rate-limit window refused it).
  boost::asio::awaitable<pg::db_result<bool>> release_line(std::string batch_id, int line_no,
                                                           std::string owner,
                                                           std::int64_t delay_ms);
  // Extends the leases `owner` holds (the lines it is running).
  boost::asio::awaitable<pg::db_result<std::int64_t>> renew_leases(std::string owner,
                                                                   std::int64_t lease_ms);
  // Moves every unfinished batch along (tollgate_advance_batch); returns how many ended.
  boost::asio::awaitable<pg::db_result<int>> advance_batches();

 private:
  // In one transaction: `insert_sql` (the object's row), COPY `rows` (its lines) by
  // `copy_sql`, then `shown_sql` ($1 = `id`), whose value is returned.
  boost::asio::awaitable<store_result> insert_with_lines(std::string insert_sql,
                                                         std::vector<pg::param> params,
                                                         std::string copy_sql, std::string rows,
                                                         std::string shown_sql, std::string id);
  boost::asio::awaitable<store_result> one_json(std::string sql, std::vector<pg::param> params,
                                                std::string not_found);
  pg::pool& pool_;
};

}  // namespace tollgate::billing
