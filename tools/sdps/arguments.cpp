#include "arguments.hpp"

#include <sdps/log.hpp>

#include <boost/program_options/parsers.hpp>
#include <boost/program_options/positional_options.hpp>

#include <sysexits.h>

#include <algorithm>
#include <iostream>
#include <sstream>

namespace sdps::admin {

namespace {

/// Program_options' usual style without abbreviated long options: an
/// admin's `--read` must not silently mean `--read-older-than`.
constexpr int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;

/// --help or -h among the options (before a `--`).
bool asks_for_help(const std::vector<std::string>& words) {
  for (const auto& w : words) {
    if (w == "--") return false;
    if (w == "--help" || w == "-h") return true;
  }
  return false;
}

/// Program_options names an option that has only a short name (`-f`) as
/// '--f' in its messages: the admin typed -f.
std::string short_names_as_typed(std::string message) {
  for (std::size_t at = message.find("'--"); at != std::string::npos; at = message.find("'--", at + 1))
    if (at + 4 < message.size() && message[at + 4] == '\'') message.erase(at + 1, 1);
  return message;
}

}  // namespace

arguments::arguments(std::string command, std::string synopsis, std::string about)
    : command_(std::move(command)), synopsis_(std::move(synopsis)), about_(std::move(about)) {}

void arguments::operand(std::string name, std::string& into) {
  operands_.push_back({std::move(name), &into, nullptr, nullptr, 1});
}

void arguments::optional_operand(std::string name, std::optional<std::string>& into) {
  operands_.push_back({std::move(name), nullptr, &into, nullptr, 0});
}

void arguments::operands(std::string name, std::vector<std::string>& into, std::size_t least) {
  operands_.push_back({std::move(name), nullptr, nullptr, &into, least});
}

std::optional<int> arguments::parse(const std::vector<std::string>& words) {
  std::vector<std::string> free;
  po::options_description all = described();
  all.add_options()("operand", po::value(&free));
  po::positional_options_description positional;
  positional.add("operand", -1);
  try {
    po::store(po::command_line_parser(words).options(all).positional(positional).style(style).run(), values_);
    if (values_.count("help")) {
      std::cout << usage();
      return EX_OK;
    }
    po::notify(values_);
  } catch (const po::error& e) {
    // `--help` answers even beside a mistake: it is what the admin wants.
    if (asks_for_help(words)) {
      std::cout << usage();
      return EX_OK;
    }
    return usage_error(short_names_as_typed(e.what()));
  }
  return assign_operands(free);
}

std::optional<int> arguments::assign_operands(const std::vector<std::string>& words) {
  std::size_t next = 0;
  for (const operand_slot& slot : operands_) {
    if (slot.one) {
      if (next == words.size()) return usage_error("needs " + slot.name);
      *slot.one = words[next++];
    } else if (slot.maybe) {
      if (next < words.size()) *slot.maybe = words[next++];
    } else {
      const std::size_t left = words.size() - next;
      if (left < slot.least)
        return usage_error(slot.least == 1 ? "needs " + slot.name
                                           : "needs at least " + std::to_string(slot.least) + " " + slot.name);
      slot.many->assign(words.begin() + static_cast<std::ptrdiff_t>(next), words.end());
      next = words.size();
    }
  }
  if (next < words.size()) {
    std::string problem = "unexpected argument '";
    problem += printable(words[next], 60);
    problem += '\'';
    return usage_error(problem);
  }
  return std::nullopt;
}

bool arguments::given(const std::string& name) const {
  const auto found = values_.find(name);
  return found != values_.end() && !found->second.defaulted();
}

po::options_description arguments::described() const {
  po::options_description out("Options");
  for (const auto& option : options_.options()) out.add(option);
  out.add_options()("help,h", "print this usage and exit");
  return out;
}

int arguments::usage_error(const std::string& problem) const {
  std::cerr << "sdps: " << command_ << ": " << problem << "\n" << usage();
  return EX_USAGE;
}

std::string arguments::usage() const {
  std::ostringstream out;
  out << "usage: sdps -c FILE " << command_ << (synopsis_.empty() ? "" : " ") << synopsis_ << "\n"
      << about_ << "\n"
      << described();
  return out.str();
}

std::optional<int> pick_subcommand(const command_group& group, const std::vector<std::string>& words,
                                   std::string& name) {
  if (words.empty()) {
    std::cerr << "sdps: " << group.name << ": which one? (" << group.about << ")\n" << group_usage(group);
    return EX_USAGE;
  }
  if (words.front() == "--help" || words.front() == "-h") {
    std::cout << group_usage(group);
    return EX_OK;
  }
  for (const std::string& line : group.commands)
    if (line.substr(0, line.find(' ')) == words.front()) {
      name = words.front();
      return std::nullopt;
    }
  std::cerr << "sdps: " << group.name << ": unknown subcommand '" << printable(words.front(), 40) << "'\n"
            << group_usage(group);
  return EX_USAGE;
}

std::string group_usage(const command_group& group) {
  std::string out;
  for (std::size_t i = 0; i < group.commands.size(); ++i) {
    out += i == 0 ? "usage: " : "       ";
    out += "sdps -c FILE ";
    out += group.name;
    out += ' ';
    out += group.commands[i];
    out += '\n';
  }
  out += "sdps ";
  out += group.name;
  out += ": ";
  out += group.about;
  out += "; `sdps ";
  out += group.name;
  out += " SUBCOMMAND --help` describes each.\n";
  return out;
}

}  // namespace sdps::admin
