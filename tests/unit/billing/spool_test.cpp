// The ledger spool: CRC-32C, segments appended, sealed, read back, found again after a restart,
// and a torn last record (a crash mid-append) cut off cleanly.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <csignal>
#include <sys/resource.h>
#include <unistd.h>

#include "billing/spool.hpp"

using tollgate::billing::crc32c;
using tollgate::billing::spool;

namespace {
std::string temp_dir(const char* name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   (std::string("tollgate-spool-") + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}
}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c("") == 0u);
  CHECK(tollgate::billing::crc32c_portable("123456789") == 0xE3069283u);
  // The CPU's instruction and the table agree at every length and alignment.
  std::string bytes;
  for (int i = 0; i < 300; ++i) bytes.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  for (std::size_t at = 0; at < 9; ++at) {
    for (std::size_t n = 0; at + n <= bytes.size(); n += 7) {
      const std::string_view piece(bytes.data() + at, n);
      REQUIRE(crc32c(piece) == tollgate::billing::crc32c_portable(piece));
    }
  }
}

TEST_CASE("spool: append, seal, read back, remove") {
  const auto dir = temp_dir("basic");
  spool s(dir, 1 << 20);
  CHECK(s.seal() == 0);  // nothing to seal
  REQUIRE(s.append("row one\n"));
  REQUIRE(s.append(std::string("row\ttwo\\N\n")));
  const auto seq = s.seal();
  REQUIRE(seq != 0);
  CHECK(s.sealed() == std::vector<std::uint64_t>{seq});
  bool damaged = true;
  const auto records = s.read(seq, damaged);
  CHECK_FALSE(damaged);
  REQUIRE(records.size() == 2);
  CHECK(records[0] == "row one\n");
  CHECK(records[1] == "row\ttwo\\N\n");
  CHECK(s.bytes() == 2 * 8 + 8 + 10);
  s.remove(seq);
  CHECK(s.sealed().empty());
  CHECK(s.bytes() == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("spool: a restart finds the segments left behind, the open one included") {
  const auto dir = temp_dir("restart");
  {
    spool s(dir, 1 << 20);
    s.append("a\n");
    s.seal();
    s.append("b\n");  // still open when the process "dies"
  }
  spool again(dir, 1 << 20);
  const auto left = again.sealed();
  REQUIRE(left.size() == 2);
  bool damaged = false;
  CHECK(again.read(left[0], damaged) == std::vector<std::string>{"a\n"});
  CHECK(again.read(left[1], damaged) == std::vector<std::string>{"b\n"});
  // New appends go to a segment after the old ones.
  again.append("c\n");
  const auto seq = again.seal();
  CHECK(seq > left[1]);
  std::filesystem::remove_all(dir);
}

TEST_CASE("spool: a torn or corrupt record ends the segment; the records before it survive") {
  const auto dir = temp_dir("torn");
  std::uint64_t seq = 0;
  {
    spool s(dir, 1 << 20);
    s.append("good one\n");
    s.append("good two\n");
    seq = s.seal();
  }
  char name[64];
  std::snprintf(name, sizeof name, "/ledger-%016llu.spool", static_cast<unsigned long long>(seq));
  const std::string path = dir + name;
  SECTION("torn") {
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  }
  SECTION("corrupt") {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 9 + 8 + 2);
    f.put('X');
  }
  spool s(dir, 1 << 20);
  bool damaged = false;
  const auto records = s.read(seq, damaged);
  CHECK(damaged);
  CHECK(records == std::vector<std::string>{"good one\n"});
  const auto kept = s.quarantine(seq, "rejected");
  CHECK(std::filesystem::exists(kept));
  CHECK(s.sealed().empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("spool: full() past its byte limit") {
  const auto dir = temp_dir("full");
  spool s(dir, 64);
  CHECK_FALSE(s.full());
  s.append(std::string(60, 'x'));
  CHECK(s.full());
  std::filesystem::remove_all(dir);
}

TEST_CASE("spool: a write that fails midway is cut back off, so later records stay readable") {
  const auto dir = temp_dir("partial");
  spool s(dir, 1 << 20);
  REQUIRE(s.append("first\n"));
  const std::uint64_t before = s.open_bytes();
  // Writes past a file size limit fail (EFBIG) after writing what fits: a torn record.
  ::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  rlimit small = old;
  small.rlim_cur = before + 20;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const bool appended = s.append(std::string(200, 'x'));
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
  ::signal(SIGXFSZ, SIG_DFL);
  CHECK_FALSE(appended);
  CHECK(s.open_bytes() == before);
  CHECK_FALSE(s.broken());
  REQUIRE(s.append("third\n"));  // the same segment takes records again
  const auto seq = s.seal();
  REQUIRE(seq != 0);
  bool damaged = true;
  const auto records = s.read(seq, damaged);
  CHECK_FALSE(damaged);
  REQUIRE(records.size() == 2);
  CHECK(records[1] == "third\n");
  std::uint64_t on_disk = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) on_disk += e.file_size();
  CHECK(on_disk == s.bytes());  // no torn bytes left behind
}

TEST_CASE("spool: a segment that could not be opened is opened by the next append") {
  const auto dir = temp_dir("reopen");
  spool s(dir, 1 << 20);
  REQUIRE(s.append("a\n"));
  // No descriptor left for the next segment (EMFILE; root is no exception): sealing cannot
  // open it, and appends fail.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  // Descriptors already open stay usable; no new one above stderr may be opened.
  rlimit tight = old;
  tight.rlim_cur = 3;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  const auto seq = s.seal();
  const bool refused = !s.append("b\n");
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  REQUIRE(seq != 0);
  CHECK(refused);
  // With descriptors again, the next append opens a segment and the row is kept.
  REQUIRE(s.append("c\n"));
  const auto next = s.seal();
  REQUIRE(next != 0);
  bool damaged = true;
  CHECK(s.read(next, damaged) == std::vector<std::string>{"c\n"});
  CHECK_FALSE(damaged);
}

TEST_CASE("spool: a segment that cannot be read is an I/O error, not damage") {
  const auto dir = temp_dir("ioerror");
  spool s(dir, 1 << 20);
  REQUIRE(s.append("row\n"));
  const auto seq = s.seal();
  REQUIRE(seq != 0);
  // Replace the segment with a folder of the same name: open() works, read() fails (EISDIR).
  std::string path;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find(std::to_string(seq) + ".spool") != std::string::npos) {
      path = e.path().string();
    }
  }
  REQUIRE(!path.empty());
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  bool damaged = true;
  bool io_error = false;
  CHECK(s.read(seq, damaged, &io_error).empty());
  CHECK(io_error);
  CHECK_FALSE(damaged);
  std::filesystem::remove(path);
}

TEST_CASE("spool: a probe writes nothing that stays") {
  const auto dir = temp_dir("probe");
  spool s(dir, 1 << 20);
  REQUIRE(s.append("a\n"));
  const auto before = s.open_bytes();
  CHECK(s.probe());
  CHECK(s.open_bytes() == before);
  REQUIRE(s.append("b\n"));
  const auto seq = s.seal();
  bool damaged = true;
  CHECK(s.read(seq, damaged) == std::vector<std::string>{"a\n", "b\n"});
  CHECK_FALSE(damaged);
}
