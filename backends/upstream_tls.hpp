// TLS for https upstreams: one OpenSSL client context per upstream, made once at start-up (CAs,
// client certificate), the per-connection settings (SNI, the name the certificate must carry,
// the session to resume) and the reading of a failed handshake.
#pragma once
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config.hpp"

namespace tollgate::backends {

// The client contexts of every https upstream, shared (read-only) by all I/O threads.
class upstream_tls_contexts {
 public:
  // Throws config_error naming the setting when a CA file, certificate or key cannot be loaded.
  explicit upstream_tls_contexts(const std::vector<upstream_config>& upstreams);

  // The upstream's context; nullptr for an http upstream.
  boost::asio::ssl::context* find(std::string_view upstream) const;

 private:
  std::unordered_map<std::string, std::unique_ptr<boost::asio::ssl::context>> contexts_;
};

struct ssl_session_free {
  void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
};
using ssl_session_ptr = std::unique_ptr<SSL_SESSION, ssl_session_free>;

// Prepares a client connection before its handshake: SNI (host names only), the name or IP
// address the certificate must match, and `resume` (may be null) offered for resumption.
void prepare_tls_client(SSL* ssl, const std::string& host, SSL_SESSION* resume);

// Why a handshake failed, for the log: the certificate verification error when there was one
// (sets `certificate`), else OpenSSL's reason.
std::string tls_failure_reason(SSL* ssl, const boost::system::error_code& ec, bool& certificate);

}  // namespace tollgate::backends
