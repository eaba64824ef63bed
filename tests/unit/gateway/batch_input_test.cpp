// Batch API input: multipart bodies and batch input files, line by line; batch line ids.
#include <catch2/catch.hpp>

#include "gateway/batch_api.hpp"
#include "gateway/batch_input.hpp"

using namespace tollgate::gateway;

namespace {
const std::string ct = "multipart/form-data; boundary=XyZ";

std::string line(const std::string& id, const std::string& extra = "") {
  return R"({"custom_id":")" + id +
         R"(","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}})" +
         extra;
}
}  // namespace

TEST_CASE("a multipart body gives its parts, names and file names") {
  const std::string body =
      "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in put.jsonl\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\nline 1\r\nline 2\n\r\n--XyZ--\r\n";
  const auto parts = parse_multipart(ct, body);
  REQUIRE(parts);
  REQUIRE(parts->size() == 2);
  CHECK((*parts)[0].name == "purpose");
  CHECK((*parts)[0].content == "batch");
  CHECK_FALSE((*parts)[0].has_filename);
  CHECK((*parts)[1].name == "file");
  CHECK((*parts)[1].filename == "in put.jsonl");
  CHECK((*parts)[1].content == "line 1\r\nline 2\n");
  // The boundary may be quoted; header names are case-insensitive.
  const auto quoted =
      parse_multipart("Multipart/Form-Data; boundary=\"XyZ\"",
                      "--XyZ\r\ncontent-disposition: form-data; name=a\r\n\r\n1\r\n--XyZ--");
  REQUIRE(quoted);
  CHECK((*quoted)[0].name == "a");
  CHECK((*quoted)[0].content == "1");
}

TEST_CASE("a malformed multipart body is a 400 saying what is wrong") {
  CHECK(parse_multipart("application/json", "{}").error().message.find("multipart/form-data") !=
        std::string::npos);
  CHECK(parse_multipart("multipart/form-data", "x").error().message.find("boundary") !=
        std::string::npos);
  CHECK(parse_multipart(ct, "no boundary here").error().status == 400);
  CHECK_FALSE(parse_multipart(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx"));
  CHECK_FALSE(parse_multipart(ct, "--XyZ\r\nX: y\r\n\r\nx\r\n--XyZ--"));  // no disposition
  CHECK_FALSE(parse_multipart(ct, "--XyZ\r\nContent-Disposition: attachment\r\n\r\nx\r\n--XyZ--"));
  CHECK_FALSE(parse_multipart(ct, "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--"));
  CHECK_FALSE(
      parse_multipart(ct, "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--"));
}

TEST_CASE("a batch file is split into lines and each is checked") {
  const std::string content = line("a") + "\n" + line("b") + "\r\n" + line("c");
  const auto lines = parse_batch_file(content, {});
  REQUIRE(lines);
  REQUIRE(lines->size() == 3);
  CHECK((*lines)[0].custom_id == "a");
  CHECK((*lines)[0].text == line("a") + "\n");
  CHECK((*lines)[1].text == line("b") + "\r\n");
  CHECK((*lines)[1].json == line("b"));
  CHECK((*lines)[2].text == line("c"));  // the last line may lack a line end
  CHECK((*lines)[2].model == "m");
  CHECK((*lines)[2].url == "/v1/chat/completions");
  CHECK((*lines)[2].body == R"({"model":"m","messages":[]})");
}

TEST_CASE("a bad batch line is an error naming the line") {
  const auto error_of = [](const std::string& content, std::size_t max_lines = 50000) {
    tollgate::gateway::batch_file_limits limits;
    limits.max_lines = max_lines;
    const auto r = parse_batch_file(content, limits);
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(error_of(line("a") + "\n{oops\n"), Contains("Line 2") && Contains("not valid JSON"));
  CHECK_THAT(error_of(line("a") + "\n\n" + line("b")), Contains("Line 2") && Contains("blank"));
  CHECK_THAT(error_of("[1]\n"), Contains("Line 1") && Contains("not a JSON object"));
  CHECK_THAT(error_of(R"({"custom_id":"","method":"POST"})"), Contains("custom_id"));
  CHECK_THAT(error_of(line("a") + "\n" + line("a")), Contains("Line 2") && Contains("unique"));
  CHECK_THAT(error_of(R"({"custom_id":"a","method":"GET"})"), Contains("method"));
  CHECK_THAT(error_of(R"({"custom_id":"a","method":"POST","url":"/v1/embeddings"})"),
             Contains("url"));
  CHECK_THAT(error_of(R"({"custom_id":"a","method":"POST","url":"/v1/completions","body":1})"),
             Contains("body"));
  CHECK_THAT(error_of(R"({"custom_id":"a","method":"POST","url":"/v1/completions","body":{}})"),
             Contains("body.model"));
  CHECK_THAT(error_of(line("a").substr(0, line("a").size() - 2) + R"(,"stream":true}})"),
             Contains("stream"));
  CHECK_THAT(error_of(R"({"custom_id":")" + std::string(600, 'x') + "\"}"),
             Contains("longer than 512"));
  CHECK_THAT(error_of(line("a") + "\n" + line("b") + "\n" + line("c"), 2),
             Contains("more than 2 lines"));
  CHECK_THAT(error_of(""), Contains("empty"));
}

TEST_CASE("a batch line's request id depends on the batch and the custom_id only") {
  const std::string a = batch_line_request_id("batch_1", "x");
  CHECK(a.size() == 36);
  CHECK(a.rfind("req_", 0) == 0);
  CHECK(a == batch_line_request_id("batch_1", "x"));
  CHECK(a != batch_line_request_id("batch_2", "x"));
  CHECK(a != batch_line_request_id("batch_1", "y"));
  // The separator keeps ("ab", "c") and ("a", "bc") apart.
  CHECK(batch_line_request_id("ab", "c") != batch_line_request_id("a", "bc"));
}
