// libFuzzer target: any bytes in a spool segment (a torn or corrupt file) are read without a
// crash, and the records read back are exactly a valid prefix of the file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "billing/spool.hpp"

using tollgate::billing::crc32c;
using tollgate::billing::spool;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir =
      (std::filesystem::temp_directory_path() / ("tollgate-spool-fuzz-" + std::to_string(getpid())))
          .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/ledger-0000000000000001.spool", std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  spool s(dir, 1 << 30);
  bool damaged = false;
  const auto records = s.read(1, damaged);
  // Re-encode what was read: it must be the file's first bytes, and all of them unless damaged.
  std::string again;
  for (const auto& r : records) {
    char head[8];
    const std::uint32_t n = static_cast<std::uint32_t>(r.size());
    const std::uint32_t c = crc32c(r);
    for (int i = 0; i < 4; ++i) head[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    for (int i = 0; i < 4; ++i) head[4 + i] = static_cast<char>((c >> (8 * i)) & 0xff);
    again.append(head, 8);
    again += r;
  }
  if (again.size() > size || again != std::string(reinterpret_cast<const char*>(data), again.size())) {
    std::abort();
  }
  if (!damaged && again.size() != size) std::abort();
  return 0;
}
