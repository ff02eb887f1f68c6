#pragma once
// RFC 1939 section 3 byte-stuffing for multi-line responses.

#include <string>
#include <string_view>

namespace sdps::core {

/// Stuffs a multi-line body as it streams past: a "." at the start of a
/// line is doubled. Line starts are found after every LF, so a bare-LF
/// line can never look like the terminator to a lenient client. Pure.
class dot_stuffer {
 public:
  /// Appends `chunk`, stuffed, to `out`.
  void append(std::string_view chunk, std::string& out) {
    std::size_t from = 0;
    while (from < chunk.size()) {
      if (at_line_start_ && chunk[from] == '.') out.push_back('.');
      const std::size_t lf = chunk.find('\n', from);
      const std::size_t to = lf == std::string_view::npos ? chunk.size() : lf + 1;
      out.append(chunk.substr(from, to - from));
      at_line_start_ = lf != std::string_view::npos;
      from = to;
    }
  }
  /// Ends the body: a CRLF if the last line lacked one, then ".\r\n".
  void finish(std::string& out) {
    if (!at_line_start_) out.append("\r\n");
    out.append(".\r\n");
    at_line_start_ = true;
  }

 private:
  bool at_line_start_ = true;
};

}  // namespace sdps::core
