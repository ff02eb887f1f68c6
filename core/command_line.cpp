#include "command_line.hpp"

#include <cctype>

namespace sdps::core {

command parse_command(std::string_view line) {
  command cmd;
  const auto space = line.find(' ');
  cmd.name.assign(line.substr(0, space));
  if (space != std::string_view::npos) cmd.argument.assign(line.substr(space + 1));
  for (char& c : cmd.name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return cmd;
}

}  // namespace sdps::core
