#pragma once
// The admin tool's one argument parser: Boost.Program_options behind a
// small class that every subcommand declares its command line with, and
// that answers --help and usage errors the same way for all of them.

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/value_semantic.hpp>
#include <boost/program_options/variables_map.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace sdps::admin {

namespace po = boost::program_options;

/// One subcommand's command line, declared in a few lines:
///
///     arguments args("host add", "HOST [--dialup-ip ADDR[/PREFIX]]...",
///                    "Adds a customer host.");
///     std::vector<std::string> dialup;
///     args.options()("dialup-ip", po::value(&dialup)->value_name("ADDR[/PREFIX]"),
///                    "an address its dialup password is valid from (repeatable)");
///     std::string host;
///     args.operand("HOST", host);
///     if (const auto status = args.parse(words)) return *status;
///
/// parse() answers `--help` (`-h`) itself: the usage on standard output,
/// exit status 0, before the subcommand reads the config file (so it needs
/// no `-c`). A command line it cannot take gets one line saying what is
/// wrong, then the usage, on standard error, and exit status 64
/// (EX_USAGE). Options are matched exactly (no abbreviations); `--NAME
/// VALUE` and `--NAME=VALUE`, `-X VALUE` and `-XVALUE` are the same; `--`
/// ends the options. Not thread-safe; one parse per object.
class arguments {
 public:
  /// `command` is the subcommand's name as typed ("host add"); `synopsis`
  /// what follows it in the usage line; `about` a few lines on what it
  /// does and its exit statuses (each line ends with '\n').
  arguments(std::string command, std::string synopsis, std::string about);

  /// Declares options: options()("name,n", po::value(&x), "text")...;
  /// po::bool_switch(&flag) for a flag.
  po::options_description_easy_init options() { return options_.add_options(); }

  /// Operands (the words that are not options), filled in the order they
  /// are declared: the required ones, then an optional one, then a list.
  /// `name` is how the usage and the messages call it (HOST).
  void operand(std::string name, std::string& into);
  void optional_operand(std::string name, std::optional<std::string>& into);
  /// Every operand left, at least `least` of them.
  void operands(std::string name, std::vector<std::string>& into, std::size_t least = 0);

  /// Parses `words` (what follows the subcommand's name) into the
  /// variables given above. nullopt: go on. Otherwise the exit status to
  /// return at once: 0 after printing the usage for --help, 64 after
  /// printing a problem and the usage.
  std::optional<int> parse(const std::vector<std::string>& words);

  /// Whether option `name` (its long name) was on the command line.
  bool given(const std::string& name) const;

  /// For a problem found after parse() (a value that does not parse, two
  /// options that exclude each other): prints "sdps: COMMAND: PROBLEM" and
  /// the usage to standard error; returns 64.
  int usage_error(const std::string& problem) const;

  /// The usage: "usage: sdps -c FILE COMMAND SYNOPSIS", `about`, the options.
  std::string usage() const;

 private:
  struct operand_slot {
    std::string name;
    std::string* one = nullptr;
    std::optional<std::string>* maybe = nullptr;
    std::vector<std::string>* many = nullptr;
    std::size_t least = 0;
  };
  /// The options declared, and --help.
  po::options_description described() const;
  /// Hands out the words that were not options; nullopt or 64.
  std::optional<int> assign_operands(const std::vector<std::string>& words);

  std::string command_;
  std::string synopsis_;
  std::string about_;
  po::options_description options_;
  std::vector<operand_slot> operands_;
  po::variables_map values_;
};

/// A command made of subcommands (`sdps host add`): its name, a line on
/// what it is for, and one line per subcommand (its synopsis).
struct command_group {
  std::string name;                   ///< "host"
  std::string about;                  ///< "the host database"
  std::vector<std::string> commands;  ///< "add HOST [--dialup-ip ADDR[/PREFIX]]..."
};

/// Picks the subcommand named by the first of `words` into `name`.
/// nullopt: go on with it (its own words are the rest). Otherwise the exit
/// status to return at once: 0 after printing the group's usage for
/// --help or -h, 64 after saying what is wrong (no word, an unknown name).
std::optional<int> pick_subcommand(const command_group& group, const std::vector<std::string>& words,
                                   std::string& name);

/// The group's usage: one "usage: sdps -c FILE NAME SUBCOMMAND" line per
/// subcommand.
std::string group_usage(const command_group& group);

}  // namespace sdps::admin
