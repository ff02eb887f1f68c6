#pragma once
/// @file
/// A module instance's YAML settings, read through a small typed interface
/// so that modules do not depend on the YAML library, and every error names
/// the instance, the file and the line.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sdps {

/// A configuration problem. `what()` is one complete line for the operator,
/// already naming the file, line and module instance where known.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One YAML mapping (a module's entry, or a nested mapping inside it).
///
/// Getters throw config_error when a key is present with the wrong type or
/// an invalid value; the `_or` forms return the default when the key is
/// absent. Every key read is remembered: after the module's constructor
/// returns, the loader refuses keys that nobody read, so a misspelt setting
/// is an error rather than silently ignored.
class settings {
 public:
  virtual ~settings() = default;

  virtual bool has(const std::string& key) const = 0;
  /// The keys of this mapping, in file order.
  virtual std::vector<std::string> keys() const = 0;

  /// Required string; throws config_error when missing.
  virtual std::string string(const std::string& key) const = 0;
  virtual std::string string_or(const std::string& key, const std::string& fallback) const = 0;
  virtual std::int64_t integer_or(const std::string& key, std::int64_t fallback) const = 0;
  virtual bool boolean_or(const std::string& key, bool fallback) const = 0;
  /// Durations are written `250ms`, `30s`, `5m`, `2h` or a bare number of seconds.
  virtual std::chrono::milliseconds duration_or(const std::string& key,
                                                std::chrono::milliseconds fallback) const = 0;
  /// A path, resolved against the folder of the file it was written in.
  virtual std::filesystem::path path(const std::string& key) const = 0;
  virtual std::filesystem::path path_or(const std::string& key,
                                        const std::filesystem::path& fallback) const = 0;
  /// A sequence of strings (a lone string counts as a list of one).
  virtual std::vector<std::string> strings_or(const std::string& key,
                                              const std::vector<std::string>& fallback) const = 0;
  /// A nested mapping; throws config_error if the key is missing or not a mapping.
  virtual std::unique_ptr<settings> child(const std::string& key) const = 0;

  /// "file:line" of the key (or of this mapping when key is empty), for messages.
  virtual std::string where(const std::string& key = {}) const = 0;

  /// Throws config_error naming this mapping's instance and location.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw config_error(where(key) + ": " + message);
  }
};

}  // namespace sdps
