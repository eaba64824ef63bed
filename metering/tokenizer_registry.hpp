// Finds and loads tokenizers by the names the config's model table uses, once each:
//   "cl100k_base", "o200k_base"     tiktoken encodings (rank files in the data folder)
//   "llama3", "qwen3"               the tokenizer.json files `make deps` put in the data folder
//   a path ending in ".json"        any supported Hugging Face tokenizer.json
// The data folder is filled by `make deps` (scripts/fetch_tokenizers.sh), SHA-256 checked;
// nothing is downloaded at run time.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/error.hpp"
#include "metering/tokenizer.hpp"

namespace tollgate::metering {

// $TOLLGATE_TOKENIZER_DIR if set, else the source tree's .cache/tokenizers.
std::string default_tokenizer_dir();

class tokenizer_registry {
 public:
  explicit tokenizer_registry(std::string data_dir) : data_dir_(std::move(data_dir)) {}

  result<std::shared_ptr<const tokenizer>> get(const std::string& name);
  const std::string& data_dir() const { return data_dir_; }

 private:
  std::string data_dir_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const tokenizer>> loaded_;
};

}  // namespace tollgate::metering
