// The console's static files, embedded into the binary at build time (gateway/console/ and its
// checked third-party files, by gateway/embed_console.cmake), so the gateway serves /console/
// with no files beside it.
#pragma once
#include <span>
#include <string_view>

namespace tollgate::gateway {

struct console_asset {
  std::string_view path;          // under /console/: "index.html", "js/app.js", "vendor/..."
  std::string_view content_type;  // with charset for text
  std::string_view body;
  std::string_view etag;  // quoted: the start of the file's SHA-256
};

std::span<const console_asset> console_assets();

}  // namespace tollgate::gateway
