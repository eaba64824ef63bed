// Command-line options of the benchmark binaries: `--name value` pairs.
#pragma once
#include <string>

namespace tollgate::bench {

// The value after `name`, or `dflt` when the option is absent.
inline std::string arg(int argc, char** argv, const std::string& name, const std::string& dflt) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == name) return argv[i + 1];
  }
  return dflt;
}

}  // namespace tollgate::bench
