// The compiled part of Boost.Asio's SSL support (separate compilation: this is its one
// translation unit), used by every TLS connection: Redis, alert webhooks, https upstreams.
#include <boost/asio/ssl/impl/src.hpp>
