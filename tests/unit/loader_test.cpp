// The loader refuses every kind of broken module with one clear line.

#include "support/fakes.hpp"
#include "loader.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <unistd.h>

using namespace sdps;

namespace {

struct temp_config {
  std::filesystem::path dir;
  explicit temp_config(const std::string& modules_yaml, const std::string& top = {}) {
    dir = std::filesystem::temp_directory_path() / ("sdps-loader-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(counter()++));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "test.yaml") << "module_path: [" << SDPS_FIXTURE_DIR << "]\nmodules:\n"
                                     << modules_yaml << top;
  }
  ~temp_config() { std::filesystem::remove_all(dir); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::filesystem::path file() const { return dir / "test.yaml"; }
};

// Loads the chain; returns the error text, or "" if it loaded.
std::string load(const std::string& modules_yaml, const std::string& top = {}) {
  temp_config t(modules_yaml, top);
  asio::io_context io;
  try {
    auto config = core::load_config(t.file());
    testing::fake_server server(io, *config.globals);
    logging::source_log log(log_level::error, "test");
    core::service_registry services;
    auto chain = core::build_chain(config, server, log, services);
    return chain->links().empty() ? "no links" : "";
  } catch (const config_error& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("a healthy module loads") { CHECK(load("  - module: fixture_good\n    greeting: hi\n") == ""); }

TEST_CASE("a top-level key that neither sdpsd, the site nor a module of the chain reads is refused") {
  const auto error = load("  - module: fixture_good\n", "colour: blue\n");
  CHECK_THAT(error, Catch::Contains("test.yaml:4"));
  CHECK_THAT(error, Catch::Contains("unknown top-level setting 'colour'"));
  // A module's own top-level key is known once the module has read it.
  CHECK(load("  - module: fixture_good\n", "fixture_motd: hello\n") == "");
  // The site's sections are known whatever the chain.
  CHECK(load("  - module: fixture_good\n", "hosts: hosts\npunts: {a: a}\nmax_message_size: 2000\n") == "");
}

TEST_CASE("a module that is not there is named with the folders searched") {
  const auto error = load("  - module: no_such_module\n");
  CHECK_THAT(error, Catch::Contains("test.yaml:3"));
  CHECK_THAT(error, Catch::Contains("module 'no_such_module' not found"));
}

TEST_CASE("a shared object without the signature is refused before it is loaded") {
  CHECK_THAT(load("  - module: fixture_no_signature\n"), Catch::Contains("carries no sdps module signature"));
}

TEST_CASE("a shared object without the entry symbol is refused") {
  CHECK_THAT(load("  - module: fixture_no_entry\n"), Catch::Contains("exports no sdps_module_entry"));
}

TEST_CASE("a module built for another ABI is refused naming both versions") {
  const auto error = load("  - module: fixture_wrong_abi\n");
  CHECK_THAT(error, Catch::Contains("was built for sdps module ABI 42"));
  CHECK_THAT(error, Catch::Contains("this sdpsd has ABI " + std::to_string(SDPS_ABI_VERSION)));
}

TEST_CASE("a module from a foreign build is not binary compatible") {
  const auto error = load("  - module: fixture_bad_signature\n");
  CHECK_THAT(error, Catch::Contains("is not binary compatible"));
  CHECK_THAT(error, Catch::Contains("clang-99"));
  CHECK_THAT(error, Catch::Contains(SDPS_BUILD_SIGNATURE));
}

TEST_CASE("a factory that throws names the instance and the line") {
  const auto error = load("  - module: fixture_good\n  - module: fixture_throwing\n    name: thrower\n");
  CHECK_THAT(error, Catch::Contains("test.yaml:4"));
  CHECK_THAT(error, Catch::Contains("'thrower'"));
  CHECK_THAT(error, Catch::Contains("the factory refuses"));
}

TEST_CASE("a missing required setting names the instance") {
  const auto error = load("  - module: fixture_required_setting\n    name: needy\n");
  CHECK_THAT(error, Catch::Contains("'required_key' is required"));
  CHECK_THAT(error, Catch::Contains("needy"));
}

TEST_CASE("an unknown setting is refused with its line") {
  const auto error = load("  - module: fixture_good\n    greting: typo\n");
  CHECK_THAT(error, Catch::Contains("test.yaml:4"));
  CHECK_THAT(error, Catch::Contains("unknown setting 'greting'"));
}

TEST_CASE("a terminal module must be last") {
  CHECK(load("  - module: fixture_good\n  - module: fixture_terminal\n") == "");
  const auto error = load("  - module: fixture_terminal\n  - module: fixture_good\n");
  CHECK_THAT(error, Catch::Contains("can never run"));
  CHECK_THAT(error, Catch::Contains("'fixture_terminal'"));
}

TEST_CASE("a missing required service is named") {
  CHECK_THAT(load("  - module: fixture_requires\n"), Catch::Contains("needs a module providing fixture.wanted/1"));
}

TEST_CASE("two instances with one name are refused") {
  CHECK_THAT(load("  - module: fixture_good\n  - module: fixture_good\n"), Catch::Contains("is used twice"));
}

TEST_CASE("module names cannot walk the file system") {
  CHECK_THAT(load("  - module: ../fixture_good\n"), Catch::Contains("may hold only a-z, 0-9 and _"));
}
