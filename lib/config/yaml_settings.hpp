#pragma once
/// @file
/// Reading sdps YAML: a file into a document, and a mapping of it through
/// the module settings interface (include/sdps/settings.hpp), recording
/// which keys were read so that unread ones can be refused. Every error is
/// a config_error naming the file and the line.

#include "base/duration.hpp"

#include <sdps/settings.hpp>

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sdps::config {

/// A whole YAML file, read and checked.
struct document {
  std::filesystem::path file;  ///< absolute, normalised
  YAML::Node root;             ///< a mapping
};

/// Reads FILE: its top level must be a mapping, and no mapping anywhere in
/// it may hold a key twice (YAML forbids it; yaml-cpp would silently keep
/// one); every key is a string; no alias names a list or mapping that
/// contains it, and aliases expand the document to at most 100,000
/// values. Throws config_error ("FILE: cannot read the file", "FILE:LINE:
/// ...").
document load_document(const std::filesystem::path& file);

/// load_document's checks on TEXT, the contents of FILE (which messages
/// name and paths resolve against; not opened). Throws config_error
/// ("FILE:LINE: ...", "FILE: the top level must be a mapping").
document parse_document(std::string_view text, const std::filesystem::path& file);

/// "FILE:LINE" of `node` (FILE alone when the node has no position), FILE
/// being the file name without its folder: how every message points.
std::string location(const std::filesystem::path& file, const YAML::Node& node);

/// Throws config_error at the second occurrence of a key that appears
/// twice in the mapping `node` ("FILE:LINE: OWNER: 'KEY' is set twice
/// (first at line N)"); with `nested`, in every mapping inside it too.
void refuse_duplicate_keys(const YAML::Node& node, const std::filesystem::path& file, const std::string& owner,
                           bool nested);

/// settings over one YAML mapping. Records which keys were read so that
/// its owner (the loader, the site reader) can refuse unknown ones.
/// Refuses a mapping that holds a key twice when it is made.
class yaml_settings final : public sdps::settings {
 public:
  /// `file`: where the mapping was read from (paths resolve against its
  /// folder; messages name it). `owner`: who the keys are for, in
  /// messages ("module instance 'auth'"), or empty. `ignored` keys count
  /// as read (consumed by the caller: module, name, timeout).
  yaml_settings(YAML::Node node, std::filesystem::path file, std::string owner,
                std::set<std::string> ignored = {});

  bool has(const std::string& key) const override;
  std::vector<std::string> keys() const override;
  std::string string(const std::string& key) const override;
  std::string string_or(const std::string& key, const std::string& fallback) const override;
  std::int64_t integer_or(const std::string& key, std::int64_t fallback) const override;
  bool boolean_or(const std::string& key, bool fallback) const override;
  /// 0 is a duration like any other here (the settings interface's
  /// contract); a caller that refuses 0 reads with duration() below.
  std::chrono::milliseconds duration_or(const std::string& key,
                                        std::chrono::milliseconds fallback) const override;
  std::filesystem::path path(const std::string& key) const override;
  std::filesystem::path path_or(const std::string& key,
                                const std::filesystem::path& fallback) const override;
  std::vector<std::string> strings_or(const std::string& key,
                                      const std::vector<std::string>& fallback) const override;
  std::unique_ptr<sdps::settings> child(const std::string& key) const override;
  std::string where(const std::string& key = {}) const override;

  /// child() as what it is: a nested mapping's settings, with the
  /// methods below. Throws config_error if the key is missing or not a
  /// mapping.
  std::unique_ptr<yaml_settings> mapping(const std::string& key) const;
  /// duration_or with 0 allowed or refused, as the caller says; the
  /// message is "'KEY' " and base::duration_expected's words.
  std::chrono::milliseconds duration(const std::string& key, std::chrono::milliseconds fallback,
                                     base::zero_duration zero) const;

  /// The file the mapping was read from.
  const std::filesystem::path& file() const { return file_; }
  /// Keys present but never read, for the unknown-key check.
  std::vector<std::string> unread() const;
  /// Every key asked for so far, present or not.
  const std::set<std::string>& read_keys() const { return read_; }
  /// Notes the keys asked for from now on as `reader`'s too (the loader
  /// names each module instance while it is created and started); empty:
  /// nobody's.
  void attribute_reads_to(std::string reader) { reader_ = std::move(reader); }
  /// The keys `reader` asked for (present or not).
  std::set<std::string> keys_read_by(const std::string& reader) const;
  /// Throws config_error naming the first unread key.
  void refuse_unread(const std::string& what) const;

 private:
  YAML::Node get(const std::string& key) const;
  [[noreturn]] void bad(const std::string& key, const std::string& expected) const;
  YAML::Node peek(const std::string& key) const;

  YAML::Node node_;
  std::filesystem::path file_;
  std::string owner_;
  mutable std::set<std::string> read_;
  std::string reader_;
  mutable std::map<std::string, std::set<std::string>> read_by_;
};

}  // namespace sdps::config
