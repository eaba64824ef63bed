// The intrusive list of the requests in flight on one I/O thread (api_handler keeps one per
// thread, for the drain's last records): an entry links a request's state in for as long as
// the request is handled.
#pragma once
#include <functional>

namespace tollgate::gateway {

// Keeps a request on its I/O thread's in-flight list while it is handled. A request whose
// coroutine is destroyed after the handler (the drain timed out, its event loop stopped) was
// detached by ~api_handler and touches nothing.
class in_flight_entry {
 public:
  template <typename State, typename List>
  in_flight_entry(State& st, List& list) : unlink_([&st, &list] {
    if (!st.listed) return;
    if (st.prev_in_flight != nullptr) st.prev_in_flight->next_in_flight = st.next_in_flight;
    else list.head = st.next_in_flight;
    if (st.next_in_flight != nullptr) st.next_in_flight->prev_in_flight = st.prev_in_flight;
  }) {
    st.next_in_flight = list.head;
    if (list.head != nullptr) list.head->prev_in_flight = &st;
    list.head = &st;
    st.listed = true;
  }
  ~in_flight_entry() { unlink_(); }
  in_flight_entry(const in_flight_entry&) = delete;
  in_flight_entry& operator=(const in_flight_entry&) = delete;

 private:
  std::function<void()> unlink_;
};

}  // namespace tollgate::gateway
