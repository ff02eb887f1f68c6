#pragma once
/// @file
/// The one place sdps includes Boost.Asio's coroutine support.
///
/// <utility> comes first, for Boost 1.74 (docs/toolchain.md). Every sdps
/// file (core and modules) includes Asio through here.

#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sdps {

namespace asio = boost::asio;

/// A coroutine result type: every asynchronous function in the API returns one.
template <typename T = void>
using awaitable = asio::awaitable<T>;

using executor = asio::any_io_executor;

}  // namespace sdps
