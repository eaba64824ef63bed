// Tokenizer lookup by name (see tokenizer_registry.hpp).
#include "metering/tokenizer_registry.hpp"

#include <cstdlib>

namespace tollgate::metering {

std::string default_tokenizer_dir() {
  if (const char* dir = std::getenv("TOLLGATE_TOKENIZER_DIR"); dir != nullptr && *dir != '\0') return dir;
  return TOLLGATE_DEFAULT_TOKENIZER_DIR;
}

result<std::shared_ptr<const tokenizer>> tokenizer_registry::get(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (const auto it = loaded_.find(name); it != loaded_.end()) return it->second;
  result<std::shared_ptr<const tokenizer>> t = internal_error("");
  if (name == "cl100k_base" || name == "o200k_base") {
    t = tokenizer::load_tiktoken(name, data_dir_ + "/" + name + ".tiktoken");
  } else if (name == "llama3" || name == "qwen3") {
    t = tokenizer::load_hugging_face(data_dir_ + "/" + name + ".tokenizer.json");
  } else if (name.size() > 5 && name.ends_with(".json")) {
    t = tokenizer::load_hugging_face(name);
  } else {
    return internal_error("unknown tokenizer '" + name +
                          "' (cl100k_base, o200k_base, llama3, qwen3, or a tokenizer.json path)");
  }
  if (t) loaded_.emplace(name, *t);
  return t;
}

}  // namespace tollgate::metering
