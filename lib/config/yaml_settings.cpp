#include "config/yaml_settings.hpp"

#include <charconv>
#include <fstream>
#include <iterator>
#include <map>
#include <system_error>
#include <vector>

namespace sdps::config {

std::string location(const std::filesystem::path& file, const YAML::Node& node) {
  std::string out = file.filename().string();
  if (node.IsDefined() && node.Mark().line >= 0) {
    // Appended: docs/toolchain.md (5) on ":" + std::string.
    out += ':';
    out += std::to_string(node.Mark().line + 1);
  }
  return out;
}

void refuse_duplicate_keys(const YAML::Node& node, const std::filesystem::path& file, const std::string& owner,
                           bool nested) {
  if (node.IsMap()) {
    std::map<std::string, int> first_line;
    for (auto it = node.begin(); it != node.end(); ++it) {
      // By value: the iterator hands out a temporary pair.
      const YAML::Node key = it->first;
      const std::string name = key.IsScalar() ? key.Scalar() : std::string();
      if (key.IsScalar() && !first_line.emplace(name, key.Mark().line + 1).second)
        throw config_error(location(file, key) + (owner.empty() ? "" : ": " + owner) + ": '" + name +
                           "' is set twice (first at line " + std::to_string(first_line[name]) + ")");
      if (nested) refuse_duplicate_keys(it->second, file, owner, true);
    }
  } else if (nested && node.IsSequence()) {
    for (const YAML::Node& item : node) refuse_duplicate_keys(item, file, owner, true);
  }
}

namespace {

/// Walks a document as yaml-cpp shares it (an alias is the very node its
/// anchor names, so `&a [*a]` contains itself and a few aliases of aliases
/// stand for millions of nodes), each node once: refuses a node that
/// contains itself, a document past max_nodes once its aliases are
/// expanded (what the duplicate-key check and a reload's comparison walk),
/// and a key that is not a string.
class alias_check {
 public:
  static constexpr std::size_t max_nodes = 100000;

  explicit alias_check(const std::filesystem::path& file) : file_(file) {}

  /// The number of nodes `node` stands for, expanded.
  std::size_t expanded(const YAML::Node& node) {
    if (!node.IsMap() && !node.IsSequence()) return 1;
    // Nodes by their position, told apart by identity (two may share one).
    std::vector<seen>& here = seen_[node.Mark().pos];
    for (const seen& s : here) {
      if (!s.node.is(node)) continue;
      if (s.size == 0) throw config_error(location(file_, node) + ": an alias refers to a list or mapping that contains it");
      return s.size;
    }
    const std::size_t index = here.size();
    here.push_back({node, 0});
    std::size_t size = 1;
    if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;
        if (!key.IsScalar()) throw config_error(location(file_, key) + ": a key must be a string, not a list, a mapping or null");
        size = add(size, 1 + expanded(it->second), node);
      }
    } else {
      for (const YAML::Node& item : node) size = add(size, expanded(item), node);
    }
    // `here` may have moved: nodes at the same position were added since.
    seen_[node.Mark().pos][index].size = size;
    return size;
  }

 private:
  struct seen {
    YAML::Node node;
    std::size_t size;  ///< 0 while its contents are walked
  };

  std::size_t add(std::size_t size, std::size_t more, const YAML::Node& node) const {
    if (size + more > max_nodes)
      throw config_error(location(file_, node) + ": the aliases expand the document past " +
                         std::to_string(max_nodes) + " values");
    return size + more;
  }

  const std::filesystem::path& file_;
  std::map<int, std::vector<seen>> seen_;
};

}  // namespace

document load_document(const std::filesystem::path& given) {
  const std::filesystem::path file = std::filesystem::absolute(given).lexically_normal();
  std::error_code ec;
  std::ifstream in(file, std::ios::binary);
  if (!in || std::filesystem::is_directory(file, ec)) throw config_error(file.string() + ": cannot read the file");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw config_error(file.string() + ": cannot read the file");
  return parse_document(text, file);
}

document parse_document(std::string_view text, const std::filesystem::path& file) {
  document out;
  out.file = file;
  try {
    out.root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw config_error(out.file.filename().string() + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!out.root.IsMap()) throw config_error(out.file.filename().string() + ": the top level must be a mapping");
  alias_check(out.file).expanded(out.root);
  refuse_duplicate_keys(out.root, out.file, "", true);
  return out;
}

yaml_settings::yaml_settings(YAML::Node node, std::filesystem::path file, std::string owner,
                             std::set<std::string> ignored)
    : node_(std::move(node)), file_(std::move(file)), owner_(std::move(owner)), read_(std::move(ignored)) {
  refuse_duplicate_keys(node_, file_, owner_, false);
}

YAML::Node yaml_settings::get(const std::string& key) const {
  read_.insert(key);
  if (!reader_.empty()) read_by_[reader_].insert(key);
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (auto it = node_.begin(); it != node_.end(); ++it)
    if (it->first.as<std::string>() == key) return it->second;
  return YAML::Node(YAML::NodeType::Undefined);
}

void yaml_settings::bad(const std::string& key, const std::string& expected) const {
  fail(key, "'" + key + "' must be " + expected);
}

std::string yaml_settings::where(const std::string& key) const {
  std::string at = key.empty() ? location(file_, node_) : location(file_, peek(key));
  return at + (owner_.empty() ? "" : ": " + owner_);
}

YAML::Node yaml_settings::peek(const std::string& key) const {
  if (!node_.IsMap()) return node_;
  for (auto it = node_.begin(); it != node_.end(); ++it)
    if (it->first.as<std::string>() == key) return it->second.IsNull() ? it->first : it->second;
  return node_;
}

std::vector<std::string> yaml_settings::keys() const {
  std::vector<std::string> out;
  if (node_.IsMap())
    for (auto it = node_.begin(); it != node_.end(); ++it) out.push_back(it->first.as<std::string>());
  return out;
}

bool yaml_settings::has(const std::string& key) const {
  const YAML::Node n = get(key);
  return n.IsDefined() && !n.IsNull();
}

std::string yaml_settings::string(const std::string& key) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) fail(key, "'" + key + "' is required");
  if (!n.IsScalar()) bad(key, "a string");
  return n.Scalar();
}

std::string yaml_settings::string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

std::int64_t yaml_settings::integer_or(const std::string& key, std::int64_t fallback) const {
  if (!has(key)) return fallback;
  const std::string text = string(key);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) bad(key, "a whole number");
  return value;
}

bool yaml_settings::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const std::string text = string(key);
  if (text == "true" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "no" || text == "off") return false;
  bad(key, "true or false");
}

std::chrono::milliseconds yaml_settings::duration(const std::string& key, std::chrono::milliseconds fallback,
                                                  base::zero_duration zero) const {
  if (!has(key)) return fallback;
  const auto parsed = base::parse_duration(string(key), zero);
  if (!parsed) fail(key, "'" + key + "' " + base::duration_expected(zero));
  return *parsed;
}

std::chrono::milliseconds yaml_settings::duration_or(const std::string& key,
                                                     std::chrono::milliseconds fallback) const {
  return duration(key, fallback, base::zero_duration::allowed);
}

std::filesystem::path yaml_settings::path(const std::string& key) const {
  const std::filesystem::path p = string(key);
  if (p.empty()) bad(key, "a path");
  return (file_.parent_path() / p).lexically_normal();
}

std::filesystem::path yaml_settings::path_or(const std::string& key, const std::filesystem::path& fallback) const {
  if (has(key)) return path(key);
  if (fallback.empty()) return fallback;
  return (file_.parent_path() / fallback).lexically_normal();
}

std::vector<std::string> yaml_settings::strings_or(const std::string& key,
                                                   const std::vector<std::string>& fallback) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) bad(key, "a list of strings");
  std::vector<std::string> out;
  for (const YAML::Node& item : n) {
    if (!item.IsScalar()) bad(key, "a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

std::unique_ptr<sdps::settings> yaml_settings::child(const std::string& key) const { return mapping(key); }

std::unique_ptr<yaml_settings> yaml_settings::mapping(const std::string& key) const {
  const YAML::Node n = get(key);
  if (!n.IsDefined() || n.IsNull()) fail(key, "'" + key + "' is required");
  if (!n.IsMap()) bad(key, "a mapping");
  // A nested mapping's keys are its owner's business: no unread check.
  return std::make_unique<yaml_settings>(n, file_, owner_);
}

std::set<std::string> yaml_settings::keys_read_by(const std::string& reader) const {
  const auto it = read_by_.find(reader);
  return it == read_by_.end() ? std::set<std::string>{} : it->second;
}

std::vector<std::string> yaml_settings::unread() const {
  std::vector<std::string> out;
  if (!node_.IsMap()) return out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (!read_.count(key)) out.push_back(key);
  }
  return out;
}

void yaml_settings::refuse_unread(const std::string& what) const {
  const auto keys = unread();
  if (!keys.empty()) fail(keys.front(), "unknown setting '" + keys.front() + "' for " + what);
}

}  // namespace sdps::config
