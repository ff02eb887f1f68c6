// sdps: the admin tool (hosts, local delivery, the spool, its SMTP side).

#include "admin.hpp"

#include "base/version.hpp"

#include <boost/program_options/parsers.hpp>
#include <boost/program_options/positional_options.hpp>

#include <sodium.h>
#include <sysexits.h>

#include <climits>
#include <iostream>
#include <map>

namespace {

namespace po = boost::program_options;
namespace admin = sdps::admin;

const char* commands_usage =
    "usage: sdps -c FILE COMMAND [ARGUMENTS...]\n"
    "       sdps COMMAND --help       (that command's usage and exit statuses; no -c needed)\n"
    "       sdps --version\n"
    "Commands:\n"
    "  host add HOST [--dialup-ip ADDR[/PREFIX]]...\n"
    "  host passwd HOST --dialup|--pop3      (reads the password, one line, from stdin)\n"
    "  host dialup HOST [--clear] [--add ADDR[/PREFIX]]... [--remove ADDR[/PREFIX]]...\n"
    "  host del HOST\n"
    "  host list\n"
    "  host init\n"
    "  host import HOSTS-FILE\n"
    "  host export\n"
    "  deliver [--punt NAME] -f SENDER RECIPIENT...   (the message on stdin)\n"
    "  spool list HOST\n"
    "  flush HOST [--to ADDR:PORT] [--helo NAME] [--max-messages N] [--timeout DUR]\n"
    "  expire --older-than DUR [--read-older-than DUR] [--relay ADDR:PORT] [--helo NAME] [--timeout DUR]\n"
    "         [--dry-run] [HOST...]\n"
    "  lmtp --listen ADDR:PORT|unix:PATH [--listen ...] [--socket-mode MODE] [--socket-owner USER]\n"
    "       [--socket-group GROUP] [--max-connections N] [--timeout DUR] [--quiet]\n"
    "  who [--json]                            (the running sdpsd's sessions, through control_socket:)\n"
    "  kick ID | --host HOST | --login LOGIN   (ends sessions without UPDATE; exit 1 if none matched)\n"
    "  status [--json]                         (each punt up or down; exit 1 if some is down)\n";

using command_main = int (*)(admin::tool&, const std::vector<std::string>&);
const std::map<std::string, command_main> commands = {
    {"host", admin::host_main},   {"deliver", admin::deliver_main}, {"spool", admin::spool_main},
    {"flush", admin::flush_main}, {"expire", admin::expire_main},   {"lmtp", admin::lmtp_main},
    {"who", admin::who_main},     {"kick", admin::kick_main},       {"status", admin::status_main},
};

/// Program_options' style, abbreviations refused (as in arguments.cpp).
constexpr int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;

/// The first word that is not an option names the command: it and every
/// word after it are the command's, never the tool's own options.
std::vector<po::option> command_and_its_words(std::vector<std::string>& words) {
  std::vector<po::option> out;
  if (words.empty() || words.front().starts_with('-')) return out;
  for (const std::string& word : words) {
    po::option positional;
    positional.value.push_back(word);
    positional.original_tokens.push_back(word);
    positional.position_key = INT_MAX;
    out.push_back(std::move(positional));
  }
  words.clear();
  return out;
}

int usage_error(const std::string& problem, const po::options_description& options) {
  std::cerr << "sdps: " << problem << "\n" << commands_usage << options;
  return EX_USAGE;
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  bool version = false, help = false;
  std::vector<std::string> command;
  po::options_description options("Options");
  options.add_options()("config,c", po::value(&file)->value_name("FILE"),
                        "the YAML configuration (the one sdpsd reads)")(
      "version,V", po::bool_switch(&version), "print the version, commit and library versions and exit")(
      "help,h", po::bool_switch(&help), "print this usage and exit");
  po::options_description all;
  all.add(options);
  all.add_options()("command", po::value(&command));
  po::positional_options_description positional;
  positional.add("command", -1);
  try {
    po::variables_map values;
    po::store(po::command_line_parser(std::vector<std::string>(argv + 1, argv + argc))
                  .options(all)
                  .positional(positional)
                  .style(style)
                  .extra_style_parser(command_and_its_words)
                  .run(),
              values);
    po::notify(values);
  } catch (const po::error& e) {
    return usage_error(e.what(), options);
  }
  if (version) {
    std::cout << sdps::base::version::describe("sdps");
    return EX_OK;
  }
  if (help) {
    std::cout << commands_usage << options;
    return EX_OK;
  }
  if (command.empty()) return usage_error("which command?", options);
  const auto found = commands.find(command.front());
  if (found == commands.end()) return usage_error("unknown command " + admin::quoted(command.front(), 40), options);
  const std::vector<std::string> words(command.begin() + 1, command.end());

  if (sodium_init() < 0) {
    std::cerr << "sdps: libsodium failed to initialise\n";
    return EX_SOFTWARE;
  }
  admin::tool tool(file);
  try {
    return found->second(tool, words);
  } catch (const admin::tool_exit& e) {
    std::cerr << "sdps: " << command.front() << ": " << e.what() << "\n";
    return e.status();
  } catch (const sdps::config_error& e) {
    std::cerr << "sdps: " << e.what() << "\n";
    return EX_CONFIG;
  } catch (const std::exception& e) {
    std::cerr << "sdps: " << e.what() << "\n";
    if (tool.switched() && std::string(e.what()).find("ermission denied") != std::string::npos) {
      const std::string user = tool.user();
      std::cerr << "sdps: run as root, sdps works as the config's user '" << user
                << "' (so that sdpsd can use what it writes); give that user the site's files: chown -R " << user
                << ": <the hosts file's folder> <each punt's folder>, or run: sudo -u " << user << " sdps ...\n";
    }
    return EX_SOFTWARE;
  }
}
