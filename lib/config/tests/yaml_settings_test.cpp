// Reading sdps YAML: documents, typed settings, unread and duplicate keys.

#include "config/yaml_settings.hpp"
#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using sdps::config_error;
using sdps::config::load_document;
using sdps::config::yaml_settings;

namespace {

const std::filesystem::path site_file = "/etc/sdps/sdps.yaml";

yaml_settings settings_of(const std::string& text, const std::string& owner = "") {
  return yaml_settings(YAML::Load(text), site_file, owner);
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const config_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("typed settings, with their defaults") {
  const auto s = settings_of("name: x\ncount: 42\nflag: yes\nwait: 250ms\nlist: [a, b]\none: c\nnothing:\n");
  CHECK(s.string("name") == "x");
  CHECK(s.string_or("missing", "d") == "d");
  CHECK(s.integer_or("count", 0) == 42);
  CHECK(s.boolean_or("flag", false));
  CHECK(s.duration_or("wait", 1s) == 250ms);
  CHECK(s.duration_or("missing", 1s) == 1s);
  CHECK(s.strings_or("list", {}) == std::vector<std::string>{"a", "b"});
  CHECK(s.strings_or("one", {}) == std::vector<std::string>{"c"});
  CHECK_FALSE(s.has("nothing"));  // present but null: absent
  CHECK(s.keys() == std::vector<std::string>{"name", "count", "flag", "wait", "list", "one", "nothing"});
}

TEST_CASE("wrong types and values name the file, the line and the owner") {
  const auto s = settings_of("count: many\nflag: maybe\nwait: soon\nlist: {a: b}\n", "module instance 'x'");
  CHECK(error_of([&] { s.integer_or("count", 0); }) == "sdps.yaml:1: module instance 'x': 'count' must be a whole number");
  CHECK(error_of([&] { s.boolean_or("flag", false); }) == "sdps.yaml:2: module instance 'x': 'flag' must be true or false");
  CHECK(error_of([&] { s.duration_or("wait", 1s); }) ==
        "sdps.yaml:3: module instance 'x': 'wait' must be a duration such as 250ms, 30s, 5m, 2h or 1d");
  CHECK(error_of([&] { s.strings_or("list", {}); }) == "sdps.yaml:4: module instance 'x': 'list' must be a list of strings");
  CHECK(error_of([&] { s.string("missing"); }) == "sdps.yaml:1: module instance 'x': 'missing' is required");
}

TEST_CASE("durations: 0 is the reader's choice; the settings interface allows it") {
  const auto s = settings_of("none: 0s\nsome: 2s\n");
  CHECK(s.duration_or("none", 1s) == 0ms);
  CHECK(s.duration("none", 1s, sdps::base::zero_duration::allowed) == 0ms);
  CHECK(s.duration("some", 1s, sdps::base::zero_duration::refused) == 2s);
  CHECK(error_of([&] { s.duration("none", 1s, sdps::base::zero_duration::refused); }) ==
        "sdps.yaml:1: 'none' must be a duration above 0 such as 250ms, 30s, 5m, 2h or 1d");
}

TEST_CASE("paths resolve against the file's folder") {
  const auto s = settings_of("hosts: ../var/hosts\nabsolute: /srv/x\n");
  CHECK(s.path("hosts") == "/etc/var/hosts");
  CHECK(s.path("absolute") == "/srv/x");
  CHECK(s.path_or("missing", "spool") == "/etc/sdps/spool");
  CHECK(s.path_or("missing", "").empty());
}

TEST_CASE("unread keys are refused by name") {
  const yaml_settings s(YAML::Load("module: x\nname: y\ncolour: blue\nsize: 3\n"), site_file, "module instance 'y'",
                        {"module", "name"});
  s.integer_or("size", 0);
  CHECK(s.unread() == std::vector<std::string>{"colour"});
  CHECK(error_of([&] { s.refuse_unread("y"); }) == "sdps.yaml:3: module instance 'y': unknown setting 'colour' for y");
}

TEST_CASE("a key set twice is an error, at its second place") {
  CHECK(error_of([] { settings_of("a: 1\nb: 2\na: 3\n", "module instance 'x'"); }) ==
        "sdps.yaml:3: module instance 'x': 'a' is set twice (first at line 1)");
  // A nested mapping is checked when it is read.
  const auto s = settings_of("tls:\n  key: a\n  key: b\n");
  CHECK(error_of([&] { s.child("tls"); }) == "sdps.yaml:3: 'key' is set twice (first at line 2)");
}

TEST_CASE("documents: a mapping at the top, no key twice anywhere, errors with the line") {
  sdps::testing::temp_dir dir;
  const auto write = [&](const std::string& text) {
    sdps::testing::write_text(dir.path() / "site.yaml", text);
    return dir.path() / "site.yaml";
  };
  const auto doc = load_document(write("listen: [127.0.0.1:110]\nmodules:\n  - module: auth\n"));
  CHECK(doc.file == dir.path() / "site.yaml");
  CHECK(doc.root["modules"].IsSequence());
  CHECK(error_of([&] { load_document(write("- a\n- b\n")); }) == "site.yaml: the top level must be a mapping");
  CHECK(error_of([&] { load_document(write("modules: [\n")); }).rfind("site.yaml:", 0) == 0);
  CHECK(error_of([&] { load_document(dir.path() / "none.yaml"); }) ==
        (dir.path() / "none.yaml").string() + ": cannot read the file");
  CHECK(error_of([&] { load_document(write("modules:\n  - module: auth\n    hosts: a\n    hosts: b\n")); }) ==
        "site.yaml:4: 'hosts' is set twice (first at line 3)");
  CHECK(error_of([&] { load_document(write("user: a\nuser: b\n")); }) == "site.yaml:2: 'user' is set twice (first at line 1)");
}

TEST_CASE("documents from text: aliases within themselves or expanding too far, and keys that are no strings") {
  const std::filesystem::path file = "/etc/sdps/site.yaml";
  const auto parse = [&](const std::string& text) { sdps::config::parse_document(text, file); };
  const auto doc = sdps::config::parse_document("base: &b {module: auth}\nmodules: [*b, *b]\n", file);
  CHECK(doc.file == file);
  CHECK(doc.root["modules"][1]["module"].as<std::string>() == "auth");
  CHECK(error_of([&] { load_document("/nonexistent/site.yaml"); }) == "/nonexistent/site.yaml: cannot read the file");
  // yaml-cpp makes an alias the node itself: a list holding itself.
  CHECK(error_of([&] { parse("a: &a [*a]\n"); }) == "site.yaml:1: an alias refers to a list or mapping that contains it");
  CHECK(error_of([&] { parse("a:\n  &m {b: [1, *m]}\n"); }) ==
        "site.yaml:2: an alias refers to a list or mapping that contains it");
  // Each line doubles the one before: 2^30 values from 31 lines.
  std::string doubling = "l0: &l0 [x, x]\n";
  for (int i = 1; i <= 30; ++i) {
    // (std::string on the left: GCC 12 at -O3 warns falsely, -Wrestrict,
    // about "literal" + std::to_string(...).)
    const std::string n = std::to_string(i);
    const std::string before = std::string("*l") + std::to_string(i - 1);
    doubling += std::string("l") + n + ": &l" + n + " [" + before + ", " + before + "]\n";
  }
  CHECK(error_of([&] { parse(doubling); }).find(": the aliases expand the document past 100000 values") !=
        std::string::npos);
  CHECK(error_of([&] { parse("[a, b]: 1\n"); }) == "site.yaml:1: a key must be a string, not a list, a mapping or null");
  CHECK(error_of([&] { parse("modules:\n  - ~: 1\n"); }) ==
        "site.yaml:2: a key must be a string, not a list, a mapping or null");
}
