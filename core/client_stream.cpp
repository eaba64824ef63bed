// The deadline sweeper of the HTTP server's client connections: see client_stream.hpp.
#include "core/client_stream.hpp"

#include <algorithm>

#include "core/assert.hpp"

namespace tollgate::http {

std::chrono::milliseconds deadline_sweeper::period_for(std::chrono::milliseconds shortest_timeout) {
  return std::clamp(shortest_timeout / 10, std::chrono::milliseconds(10),
                    std::chrono::milliseconds(1000));
}

void deadline_sweeper::add(client_stream* s) {
  TOLLGATE_ASSERT(timer_.has_value());  // started: otherwise no deadline would be enforced
  s->prev_ = nullptr;
  s->next_ = first_;
  if (first_ != nullptr) first_->prev_ = s;
  first_ = s;
}

void deadline_sweeper::remove(client_stream* s) {
  if (s->prev_ != nullptr) {
    s->prev_->next_ = s->next_;
  } else {
    first_ = s->next_;
  }
  if (s->next_ != nullptr) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
}

// The timer runs only while some stream may have a deadline (it stops once a sweep finds none),
// so an idle thread does not wake, and its event loop can run out of work at shutdown.
void deadline_sweeper::arm() {
  if (armed_ || !timer_) return;
  armed_ = true;
  timer_->expires_after(period_);
  timer_->async_wait([this](boost::system::error_code ec) {
    armed_ = false;
    if (!ec) sweep();
  });
}

void deadline_sweeper::sweep() {
  const auto now = client_stream::clock::now();
  bool pending = false;
  for (client_stream* s = first_; s != nullptr; s = s->next_) {
    if (s->deadline_ == client_stream::clock::time_point::max()) continue;
    if (s->deadline_ <= now) {
      s->deadline_ = client_stream::clock::time_point::max();
      s->close();  // as Beast's stream on a timeout: the pending operation fails
    } else {
      pending = true;
    }
  }
  if (pending) arm();
}

}  // namespace tollgate::http
