// TLS contexts and connection settings for https upstreams: see upstream_tls.hpp.
#include "backends/upstream_tls.hpp"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/ip/address.hpp>

namespace tollgate::backends {
namespace ssl = boost::asio::ssl;

namespace {

[[noreturn]] void fail(const upstream_config& u, const char* key, const std::string& file,
                       const boost::system::error_code& ec) {
  throw config_error("config /upstreams/" + u.name + "/" + key + ": cannot load \"" + file +
                     "\" (" + ec.message() + ")");
}

std::unique_ptr<ssl::context> make_context(const upstream_config& u) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (u.tls_ca_file.empty()) {
    // OpenSSL's default paths: the system store, or SSL_CERT_FILE / SSL_CERT_DIR when set.
    ctx->set_default_verify_paths(ec);
    if (ec) fail(u, "tls_ca_file", "(the system's CAs)", ec);
  } else {
    ctx->load_verify_file(u.tls_ca_file, ec);
    if (ec) fail(u, "tls_ca_file", u.tls_ca_file, ec);
  }
  if (!u.tls_client_cert_file.empty()) {
    ctx->use_certificate_chain_file(u.tls_client_cert_file, ec);
    if (ec) fail(u, "tls_client_cert_file", u.tls_client_cert_file, ec);
    ctx->use_private_key_file(u.tls_client_key_file, ssl::context::pem, ec);
    if (ec) fail(u, "tls_client_key_file", u.tls_client_key_file, ec);
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      throw config_error("config /upstreams/" + u.name +
                         "/tls_client_key_file: does not match tls_client_cert_file");
    }
  }
  ctx->set_verify_mode(ssl::verify_peer);
  // Sessions are kept by the connection pools (one per upstream per I/O thread), not by
  // OpenSSL's internal cache.
  SSL_CTX_set_session_cache_mode(ctx->native_handle(),
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  return ctx;
}

}  // namespace

upstream_tls_contexts::upstream_tls_contexts(const std::vector<upstream_config>& upstreams) {
  for (const auto& u : upstreams) {
    if (u.tls) contexts_.emplace(u.name, make_context(u));
  }
}

ssl::context* upstream_tls_contexts::find(std::string_view upstream) const {
  auto it = contexts_.find(std::string(upstream));
  return it == contexts_.end() ? nullptr : it->second.get();
}

void prepare_tls_client(SSL* ssl, const std::string& host, SSL_SESSION* resume) {
  boost::system::error_code not_ip;
  boost::asio::ip::make_address(host, not_ip);
  if (not_ip) {
    SSL_set_tlsext_host_name(ssl, host.c_str());  // SNI carries names only
    SSL_set1_host(ssl, host.c_str());             // checked during verification
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  }
  if (resume != nullptr) SSL_set_session(ssl, resume);
}

std::string tls_failure_reason(SSL* ssl, const boost::system::error_code& ec, bool& certificate) {
  const long verify = SSL_get_verify_result(ssl);
  certificate = verify != X509_V_OK;
  if (certificate) return X509_verify_cert_error_string(verify);
  return ec.message();
}

}  // namespace tollgate::backends
