// Files, batches and batch lines in PostgreSQL: see batch_store.hpp.
#include "billing/batch_store.hpp"

#include "billing/api_keys.hpp"

namespace tollgate::billing {
namespace net = boost::asio;
using pg::append_copy_text;

namespace {

// A newest-first page of `object_sql` over `from_where` (which must expose x_id), with
// OpenAI's list shape; $1 is the limit, $2 the `after` cursor (an id, older ones follow).
std::string newest_first_page(const std::string& object_sql, const std::string& from_where) {
  return "WITH page AS (SELECT " + object_sql + " AS obj, x_id FROM " + from_where +
         " AND ($2::text = '' OR x_id < $2) ORDER BY x_id DESC LIMIT $1::int + 1),"
         " numbered AS (SELECT obj, x_id, row_number() OVER (ORDER BY x_id DESC) AS rn FROM page)"
         " SELECT json_build_object('object','list','data',coalesce((SELECT json_agg(obj ORDER BY"
         " x_id DESC) FROM numbered WHERE rn <= $1::int),'[]'::json),'first_id',(SELECT max(x_id)"
         " FROM numbered WHERE rn <= $1::int),'last_id',(SELECT min(x_id) FROM numbered WHERE rn"
         " <= $1::int),'has_more',(SELECT count(*) FROM page) > $1::int)::text";
}

store_error not_found(std::string message) {
  return {404, std::move(message), "not_found"};
}

}  // namespace

net::awaitable<store_result> batch_store::one_json(std::string sql, std::vector<pg::param> params,
                                                   std::string not_found_message) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_error_from(conn.error());
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return store_error_from(r.error());
  if (r->size() == 0 || r->is_null(0, 0)) co_return not_found(std::move(not_found_message));
  co_return std::string(r->text(0, 0));
}

net::awaitable<store_result> batch_store::create_file(std::string tenant_id, std::string filename,
                                                      std::string purpose, std::int64_t bytes,
                                                      std::vector<std::string_view> lines) {
  const std::string id = new_object_id("file");
  std::string copy;
  copy.reserve(static_cast<std::size_t>(bytes) + lines.size() * 40);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    append_copy_text(copy, id);
    copy.push_back('\t');
    copy += std::to_string(i + 1);
    copy.push_back('\t');
    append_copy_text(copy, lines[i]);
    copy.push_back('\n');
  }
  return insert_with_lines(
      "INSERT INTO files (id, tenant_id, purpose, filename, bytes, line_count)"
      " VALUES ($1, $2, $3, $4, $5, $6)",
      {id, std::move(tenant_id), std::move(purpose), std::move(filename), std::to_string(bytes),
       std::to_string(lines.size())},
      "COPY file_lines (file_id, line_no, content) FROM STDIN", std::move(copy),
      "SELECT tollgate_file_json(f)::text FROM files f WHERE f.id = $1", id);
}

net::awaitable<store_result> batch_store::get_file(std::string tenant_id, std::string id) {
  return one_json(
      "SELECT tollgate_file_json(f)::text FROM files f WHERE f.id = $1"
      " AND f.tenant_id = $2",
      {id, std::move(tenant_id)}, "No such File object: " + id);
}

net::awaitable<store_result> batch_store::list_files(std::string tenant_id, std::string purpose,
                                                     page_request page) {
  return one_json(
      newest_first_page("tollgate_file_json(f.r)",
                        "(SELECT f0 AS r, f0.id AS x_id, f0.tenant_id, f0.purpose"
                        " FROM files f0) f WHERE f.tenant_id = $3"
                        " AND ($4::text = '' OR f.purpose = $4)"),
      {std::to_string(page.limit), page.after, std::move(tenant_id), std::move(purpose)},
      "Nothing to list.");
}

net::awaitable<store_result> batch_store::file_content(std::string tenant_id, std::string id) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_error_from(conn.error());
  const std::string kind_sql =
      "SELECT content_kind, batch_id FROM files WHERE id = $1 AND tenant_id = $2";
  std::vector<pg::param> kind_params{id, tenant_id};
  auto kind = co_await (*conn)->query(kind_sql, std::move(kind_params));
  if (!kind) co_return store_error_from(kind.error());
  if (kind->size() == 0) co_return not_found("No such File object: " + id);
  const std::string content_kind(kind->text(0, 0));
  const std::string lines_sql =
      content_kind == "lines"
          ? "SELECT content FROM file_lines WHERE file_id = $1 ORDER BY line_no"
          : "SELECT result FROM batch_lines WHERE batch_id = $1 AND done AND failed = " +
                std::string(content_kind == "batch_errors" ? "true" : "false") +
                " ORDER BY line_no";
  std::vector<pg::param> lines_params{content_kind == "lines" ? id : std::string(kind->text(0, 1))};
  auto lines = co_await (*conn)->query(lines_sql, std::move(lines_params));
  if (!lines) co_return store_error_from(lines.error());
  std::string out;
  for (int i = 0; i < lines->size(); ++i) out += lines->text(i, 0);
  co_return out;
}

net::awaitable<store_result> batch_store::delete_file(std::string tenant_id, std::string id) {
  return one_json(
      "WITH d AS (DELETE FROM files WHERE id = $1 AND tenant_id = $2 RETURNING id)"
      " SELECT json_build_object('id', d.id, 'object', 'file', 'deleted', true)::text"
      " FROM d",
      {id, std::move(tenant_id)}, "No such File object: " + id);
}

net::awaitable<basic_result<std::vector<std::string>, store_error>> batch_store::input_lines(
    std::string tenant_id, std::string file_id) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_error_from(conn.error());
  const std::string file_sql =
      "SELECT purpose, content_kind FROM files WHERE id = $1 AND tenant_id = $2";
  std::vector<pg::param> file_params{file_id, tenant_id};
  auto file = co_await (*conn)->query(file_sql, std::move(file_params));
  if (!file) co_return store_error_from(file.error());
  if (file->size() == 0) co_return not_found("No such File object: " + file_id);
  if (file->text(0, 0) != "batch" || file->text(0, 1) != "lines") {
    co_return store_error{400, "File " + file_id + " was not uploaded with purpose \"batch\".",
                          "invalid_file"};
  }
  const std::string lines_sql =
      "SELECT content FROM file_lines WHERE file_id = $1 ORDER BY line_no";
  std::vector<pg::param> lines_params{file_id};
  auto lines = co_await (*conn)->query(lines_sql, std::move(lines_params));
  if (!lines) co_return store_error_from(lines.error());
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(lines->size()));
  for (int i = 0; i < lines->size(); ++i) out.emplace_back(lines->text(i, 0));
  co_return out;
}

net::awaitable<store_result> batch_store::create_batch(new_batch batch) {
  std::string copy;
  for (const auto& line : batch.lines) {
    append_copy_text(copy, batch.id);
    copy.push_back('\t');
    copy += std::to_string(line.line_no);
    copy.push_back('\t');
    append_copy_text(copy, line.custom_id);
    copy.push_back('\t');
    append_copy_text(copy, line.request_id);
    copy.push_back('\t');
    append_copy_text(copy, line.body);
    copy.push_back('\n');
  }
  std::vector<pg::param> params{batch.id,
                                batch.tenant_id,
                                batch.project_id,
                                batch.api_key_id,
                                batch.endpoint,
                                batch.input_file_id,
                                batch.completion_window,
                                batch.metadata_json.empty() ? pg::param{} : batch.metadata_json,
                                std::to_string(batch.lines.size()),
                                std::to_string(batch.window_s)};
  return insert_with_lines(
      "INSERT INTO batches (id, tenant_id, project_id, api_key_id, endpoint, input_file_id,"
      " completion_window, metadata, status, line_count, expires_at) VALUES ($1, $2,"
      " nullif($3, ''), $4, $5, $6, $7, $8::jsonb, 'validating', $9,"
      " now() + $10::bigint * interval '1 second')",
      std::move(params),
      "COPY batch_lines (batch_id, line_no, custom_id, request_id, body) FROM STDIN",
      std::move(copy), "SELECT tollgate_batch_json(b)::text FROM batches b WHERE b.id = $1",
      batch.id);
}

net::awaitable<store_result> batch_store::insert_with_lines(std::string insert_sql,
                                                            std::vector<pg::param> params,
                                                            std::string copy_sql, std::string rows,
                                                            std::string shown_sql, std::string id) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_error_from(conn.error());
  pg::connection& c = **conn;
  auto begin = co_await c.exec("BEGIN");
  if (!begin) co_return store_error_from(begin.error());
  std::optional<pg::db_error> failed;
  auto inserted = co_await c.query(insert_sql, std::move(params));
  if (!inserted) failed = inserted.error();
  if (!failed) {
    auto copied = co_await c.copy_in(copy_sql, rows);
    if (!copied) failed = copied.error();
  }
  pg::rows shown;
  if (!failed) {
    std::vector<pg::param> shown_params{std::move(id)};
    auto got = co_await c.query(shown_sql, std::move(shown_params));
    if (got) {
      shown = std::move(*got);
    } else {
      failed = got.error();
    }
  }
  if (failed) {
    if (c.ok()) co_await c.exec("ROLLBACK");
    co_return store_error_from(*failed);
  }
  auto commit = co_await c.exec("COMMIT");
  if (!commit) co_return store_error_from(commit.error());
  co_return std::string(shown.text(0, 0));
}

net::awaitable<store_result> batch_store::get_batch(std::string tenant_id, std::string id) {
  return one_json(
      "SELECT tollgate_batch_json(b)::text FROM batches b WHERE b.id = $1"
      " AND b.tenant_id = $2",
      {id, std::move(tenant_id)}, "No such Batch object: " + id);
}

net::awaitable<store_result> batch_store::list_batches(std::string tenant_id, page_request page) {
  return one_json(
      newest_first_page("tollgate_batch_json(b.r)",
                        "(SELECT b0 AS r, b0.id AS x_id, b0.tenant_id FROM batches b0) b"
                        " WHERE b.tenant_id = $3"),
      {std::to_string(page.limit), page.after, std::move(tenant_id)}, "Nothing to list.");
}

net::awaitable<store_result> batch_store::get_any_batch(std::string id) {
  return one_json("SELECT tollgate_batch_json(b)::text FROM batches b WHERE b.id = $1", {id},
                  "No such Batch object: " + id);
}

net::awaitable<store_result> batch_store::list_all_batches(std::string tenant_id,
                                                           page_request page) {
  return one_json(
      newest_first_page("tollgate_batch_json(b.r)",
                        "(SELECT b0 AS r, b0.id AS x_id, b0.tenant_id FROM batches b0) b"
                        " WHERE ($3::text = '' OR b.tenant_id = $3)"),
      {std::to_string(page.limit), page.after, std::move(tenant_id)}, "Nothing to list.");
}

net::awaitable<store_result> batch_store::cancel_batch(std::string tenant_id, std::string id) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return store_error_from(conn.error());
  const std::string cancel_sql =
      "WITH b AS (SELECT status FROM batches WHERE id = $1 AND tenant_id = $2 FOR UPDATE),"
      " u AS (UPDATE batches SET status = 'cancelling', cancelling_at = now() FROM b"
      " WHERE batches.id = $1 AND b.status IN ('validating', 'in_progress') RETURNING 1)"
      " SELECT b.status, (SELECT count(*) FROM u) FROM b";
  std::vector<pg::param> params{id, tenant_id};
  auto r = co_await (*conn)->query(cancel_sql, std::move(params));
  if (!r) co_return store_error_from(r.error());
  if (r->size() == 0) co_return not_found("No such Batch object: " + id);
  const std::string before(r->text(0, 0));
  if (r->int64(0, 1) == 0 && before != "cancelling" && before != "cancelled") {
    co_return store_error{409, "Cannot cancel a batch with status " + before + ".",
                          "batch_not_cancellable"};
  }
  // Ends it now if no line is running.
  const std::string advance_sql = "SELECT tollgate_advance_batch($1, $2, $3)";
  std::vector<pg::param> advance_params{id, new_object_id("file"), new_object_id("file")};
  auto advanced = co_await (*conn)->query(advance_sql, std::move(advance_params));
  if (!advanced) co_return store_error_from(advanced.error());
  const std::string shown_sql =
      "SELECT tollgate_batch_json(b)::text FROM batches b WHERE b.id = $1";
  std::vector<pg::param> shown_params{id};
  auto shown = co_await (*conn)->query(shown_sql, std::move(shown_params));
  if (!shown) co_return store_error_from(shown.error());
  co_return std::string(shown->text(0, 0));
}

net::awaitable<pg::db_result<std::optional<claimed_batch_line>>> batch_store::claim_line(
    std::string owner, std::int64_t lease_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string claim_sql =
      "WITH c AS (SELECT l.batch_id, l.line_no FROM batches b JOIN batch_lines l"
      " ON l.batch_id = b.id AND NOT l.done"
      " WHERE b.status IN ('validating', 'in_progress') AND b.expires_at > now()"
      " AND (l.lease_until IS NULL OR l.lease_until < now())"
      " ORDER BY b.created_at, l.batch_id, l.line_no LIMIT 1 FOR UPDATE OF l SKIP LOCKED)"
      " UPDATE batch_lines l SET lease_owner = $1,"
      " lease_until = now() + $2::bigint * interval '1 millisecond',"
      " first_started_at = coalesce(l.first_started_at, now()), attempts = l.attempts + 1"
      " FROM c JOIN batches b ON b.id = c.batch_id"
      " WHERE l.batch_id = c.batch_id AND l.line_no = c.line_no"
      " RETURNING l.batch_id, l.line_no, l.custom_id, l.request_id, l.body,"
      " (extract(epoch FROM l.first_started_at) * 1000)::bigint, b.tenant_id,"
      " coalesce(b.project_id, ''), b.api_key_id, b.endpoint";
  std::vector<pg::param> params{owner, std::to_string(lease_ms)};
  auto r = co_await (*conn)->query(claim_sql, std::move(params));
  if (!r) co_return r.error();
  if (r->size() == 0) co_return std::optional<claimed_batch_line>{};
  claimed_batch_line line;
  line.batch_id = r->text(0, 0);
  line.line_no = static_cast<int>(r->int64(0, 1));
  line.custom_id = r->text(0, 2);
  line.request_id = r->text(0, 3);
  line.body = r->text(0, 4);
  line.occurred_at_ms = r->int64(0, 5);
  line.tenant_id = r->text(0, 6);
  line.project_id = r->text(0, 7);
  line.api_key_id = r->text(0, 8);
  line.endpoint = r->text(0, 9);
  co_return std::optional<claimed_batch_line>{std::move(line)};
}

net::awaitable<pg::db_result<bool>> batch_store::finish_line(std::string batch_id, int line_no,
                                                             std::string owner, bool failed,
                                                             std::string result) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "UPDATE batch_lines SET done = true, failed = $4, result = $5, finished_at = now(),"
      " lease_owner = NULL, lease_until = NULL"
      " WHERE batch_id = $1 AND line_no = $2 AND lease_owner = $3 AND NOT done";
  std::vector<pg::param> params{batch_id, std::to_string(line_no), owner, failed ? "true" : "false",
                                std::move(result)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

net::awaitable<pg::db_result<bool>> batch_store::release_line(std::string batch_id, int line_no,
                                                              std::string owner,
                                                              std::int64_t delay_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "UPDATE batch_lines SET lease_owner = NULL,"
      " lease_until = now() + $4::bigint * interval '1 millisecond'"
      " WHERE batch_id = $1 AND line_no = $2 AND lease_owner = $3 AND NOT done";
  std::vector<pg::param> params{batch_id, std::to_string(line_no), owner, std::to_string(delay_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

net::awaitable<pg::db_result<std::int64_t>> batch_store::renew_leases(std::string owner,
                                                                      std::int64_t lease_ms) {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string sql =
      "UPDATE batch_lines SET lease_until = now() + $2::bigint * interval '1 millisecond'"
      " WHERE lease_owner = $1 AND NOT done";
  std::vector<pg::param> params{owner, std::to_string(lease_ms)};
  auto r = co_await (*conn)->query(sql, std::move(params));
  if (!r) co_return r.error();
  co_return r->affected();
}

net::awaitable<pg::db_result<int>> batch_store::advance_batches() {
  auto conn = co_await pool_.acquire();
  if (!conn) co_return conn.error();
  const std::string list_sql =
      "SELECT id FROM batches WHERE status IN ('validating', 'in_progress', 'cancelling')"
      " ORDER BY created_at LIMIT 100";
  auto ids = co_await (*conn)->query(list_sql);
  if (!ids) co_return ids.error();
  int ended = 0;
  for (int i = 0; i < ids->size(); ++i) {
    const std::string sql = "SELECT tollgate_advance_batch($1, $2, $3)";
    std::vector<pg::param> params{std::string(ids->text(i, 0)), new_object_id("file"),
                                  new_object_id("file")};
    auto r = co_await (*conn)->query(sql, std::move(params));
    if (!r) co_return r.error();
    const std::string_view status = r->size() > 0 ? r->text(0, 0) : std::string_view{};
    if (status == "completed" || status == "expired" || status == "cancelled") ++ended;
  }
  co_return ended;
}

}  // namespace tollgate::billing
