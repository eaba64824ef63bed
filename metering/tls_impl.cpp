// The compiled part of Boost.Asio's SSL support (separate compilation: this is its one
// translation unit), used by the Redis client's TLS connections.
#include <boost/asio/ssl/impl/src.hpp>
