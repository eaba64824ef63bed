// The ledger's local journal and spool: append-only segment files of checksummed records.
// Every usage event is appended (write(2), no fsync) to the open segment before the ledger
// writer sends it to PostgreSQL, so a gateway killed at any moment loses nothing it answered.
// Each flush seals the open segment; the writer deletes a sealed segment only after its rows
// are committed. While PostgreSQL is away sealed segments are fsynced and kept: that is the
// spool, replayed (idempotently) once the database is back, also after a restart.
// Record layout: u32 payload length, u32 CRC-32C of the payload, payload (little-endian).
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::billing {

std::uint32_t crc32c(std::string_view data);
// The same by a table, a byte at a time (crc32c uses the CPU's instruction where it has one).
std::uint32_t crc32c_portable(std::string_view data);

class spool {
 public:
  // Opens (creating) `dir`; segments left by an earlier process become sealed segments.
  // Throws std::runtime_error if the folder cannot be used (start-up only).
  spool(std::string dir, std::uint64_t bytes_max);
  ~spool();
  spool(const spool&) = delete;
  spool& operator=(const spool&) = delete;

  // Appends one record to the open segment. Thread-safe. Returns false if the write failed
  // (disk full, I/O error); the caller keeps the event in memory. A partial write is cut back
  // off the segment; if that fails too the segment takes no more records until it is sealed
  // (broken()). A segment that could not be opened is opened again by the next append.
  bool append(std::string_view payload);
  // The open segment holds a partial record it could not cut off: seal it.
  bool broken() const;

  // Closes the open segment and starts a new one; returns the sealed segment's sequence number,
  // or 0 if the open segment was empty (nothing to seal).
  std::uint64_t seal();
  // fsyncs a sealed segment (and the folder) so that it survives a machine crash.
  bool sync(std::uint64_t seq);
  // fsyncs the open segment (group commit while the database is away).
  bool sync_open();
  std::uint64_t open_bytes() const;
  // Deletes a sealed segment whose rows are committed.
  void remove(std::uint64_t seq);
  // Renames a sealed segment to `.<why>` (`.rejected`: the database refused it; `.damaged`: it
  // ends in damage): kept for an operator, no longer replayed or counted. Returns the new path.
  std::string quarantine(std::uint64_t seq, std::string_view why);
  // Writes records that never reached a segment to a new `.rejected` file beside them;
  // returns its path ("" if even that failed).
  std::string keep_aside(std::string_view records);

  // Sealed segments still on disk, oldest first (left by an earlier run, or not yet committed).
  std::vector<std::uint64_t> sealed() const;
  // The records of a sealed segment. Reading stops at the first truncated or corrupt record
  // (a crash mid-append); `damaged` reports that. A segment that cannot be opened or read
  // (EMFILE, EIO) sets `io_error` instead (when given): nothing about its content is known, so
  // it must be kept and read again later.
  std::vector<std::string> read(std::uint64_t seq, bool& damaged, bool* io_error = nullptr) const;
  // Whether the open segment takes a write now: writes a record header and cuts it off again.
  bool probe();

  std::uint64_t bytes() const;  // all segments on disk, the open one included
  bool full() const { return bytes() >= bytes_max_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string path_of(std::uint64_t seq) const;
  void open_segment();
  bool try_open_segment();  // with mu_ held
  void forget(std::uint64_t seq);

  std::string dir_;
  std::uint64_t bytes_max_;
  mutable std::mutex mu_;
  int fd_ = -1;
  bool broken_ = false;  // a partial record could not be cut off the open segment
  std::uint64_t open_seq_ = 0;
  std::uint64_t open_bytes_ = 0;
  std::uint64_t sealed_bytes_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> sealed_;  // (seq, bytes)
};

}  // namespace tollgate::billing
