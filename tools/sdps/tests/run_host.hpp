#pragma once
// `sdps host ARGS...` run in-process for the admin tool's unit tests: the
// words as the tool hands them over, `input` on standard input, standard
// output and error captured.

#include "admin.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace sdps::admin::testing {

struct result {
  int status = -1;
  std::string out;
  std::string err;
};

inline result run_host(const site& s, const std::vector<std::string>& args, const std::string& input = "") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  REQUIRE(::write(pipe_fds[1], input.data(), input.size()) == static_cast<ssize_t>(input.size()));
  ::close(pipe_fds[1]);
  const int saved_stdin = ::dup(STDIN_FILENO);
  REQUIRE(::dup2(pipe_fds[0], STDIN_FILENO) == STDIN_FILENO);
  ::close(pipe_fds[0]);
  std::ostringstream out, err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  result r;
  tool t(s);
  r.status = host_main(t, args);
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  ::dup2(saved_stdin, STDIN_FILENO);
  ::close(saved_stdin);
  r.out = out.str();
  r.err = err.str();
  return r;
}

}  // namespace sdps::admin::testing
