#include "base/watchdog.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

using namespace std::chrono_literals;
using sdps::base::watchdog;

namespace {

/// Runs `io` until nothing is left to do, for at most `limit`.
void run_for(boost::asio::io_context& io, std::chrono::milliseconds limit) {
  io.restart();
  io.run_for(limit);
}

}  // namespace

TEST_CASE("a deadline runs its callback once when it passes, and not before") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  int fired = 0;
  const auto d = dog.add([&](watchdog::time_point) { ++fired; });
  const auto start = watchdog::clock::now();
  dog.set_after(d, 30ms);
  run_for(io, 1s);
  CHECK(fired == 1);
  CHECK(watchdog::clock::now() - start >= 30ms);
  CHECK_FALSE(dog.is_set(d));
}

TEST_CASE("a cleared deadline never fires, and a later one set meanwhile still does") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  std::vector<int> order;
  const auto a = dog.add([&](watchdog::time_point) { order.push_back(1); });
  const auto b = dog.add([&](watchdog::time_point) { order.push_back(2); });
  dog.set_after(a, 10ms);
  dog.set_after(b, 40ms);
  dog.clear(a);
  run_for(io, 1s);
  CHECK(order == std::vector<int>{2});
}

TEST_CASE("an earlier deadline moves the wake earlier; a later one does not move it") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  std::vector<int> order;
  const auto late = dog.add([&](watchdog::time_point) { order.push_back(2); });
  const auto early = dog.add([&](watchdog::time_point) { order.push_back(1); });
  dog.set_after(late, 60ms);
  dog.set_after(early, 10ms);
  run_for(io, 1s);
  CHECK(order == std::vector<int>{1, 2});
}

TEST_CASE("a callback can set its own deadline again (a deadline that moves with activity)") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  int wakes = 0;
  watchdog::id d = 0;
  d = dog.add([&](watchdog::time_point now) {
    if (++wakes < 3) dog.set(d, now + 5ms);
  });
  dog.set_after(d, 5ms);
  run_for(io, 1s);
  CHECK(wakes == 3);
}

TEST_CASE("wake_by wakes the watchdog without a deadline; deadlines due then run") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  int fired = 0;
  const auto d = dog.add([&](watchdog::time_point) { ++fired; });
  dog.set_after(d, 200ms);
  dog.wake_by(watchdog::clock::now() + 5ms);
  run_for(io, 50ms);
  CHECK(fired == 0);
  CHECK(dog.is_set(d));
}

TEST_CASE("after stop, or once destroyed, no callback runs") {
  boost::asio::io_context io;
  int fired = 0;
  {
    watchdog dog(io.get_executor());
    const auto d = dog.add([&](watchdog::time_point) { ++fired; });
    dog.set_after(d, 1ms);
  }
  watchdog stopped(io.get_executor());
  const auto d = stopped.add([&](watchdog::time_point) { ++fired; });
  stopped.set_after(d, 1ms);
  stopped.stop();
  stopped.set_after(d, 1ms);
  run_for(io, 100ms);
  CHECK(fired == 0);
}

TEST_CASE("a callback that stops the watchdog ends the wake: later deadlines do not run") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  int fired = 0;
  const auto a = dog.add([&](watchdog::time_point) {
    ++fired;
    dog.stop();
  });
  const auto b = dog.add([&](watchdog::time_point) { ++fired; });
  dog.set_after(a, 5ms);
  dog.set_after(b, 5ms);
  run_for(io, 100ms);
  CHECK(fired == 1);
}

TEST_CASE("clear_all leaves no wait pending (the loop can end), and the watchdog works on") {
  boost::asio::io_context io;
  watchdog dog(io.get_executor());
  int fired = 0;
  const auto d = dog.add([&](watchdog::time_point) { ++fired; });
  dog.set_after(d, std::chrono::hours(1));
  dog.clear_all();
  CHECK_FALSE(dog.is_set(d));
  // Nothing pending: the loop runs out of work (it would wait an hour).
  run_for(io, 200ms);
  CHECK(io.stopped());
  CHECK(fired == 0);
  dog.set_after(d, 5ms);
  run_for(io, 1s);
  CHECK(fired == 1);
}
