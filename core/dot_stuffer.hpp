#pragma once
// RFC 1939 section 3 byte-stuffing for multi-line responses.

#include <cstring>
#include <string>
#include <string_view>

namespace sdps::core {

/// Stuffs a multi-line body as it streams past: a "." at the start of a
/// line is doubled. Line starts are found after every LF, so a bare-LF
/// line can never look like the terminator to a lenient client. Pure.
class dot_stuffer {
 public:
  /// Appends `chunk`, stuffed, to `out`. Copies in runs between the dots
  /// it doubles (one append for a chunk with none).
  void append(std::string_view chunk, std::string& out) {
    if (chunk.empty()) return;
    const char* p = chunk.data();
    const char* const end = p + chunk.size();
    if (at_line_start_ && *p == '.') out.push_back('.');
    const char* run = p;
    for (;;) {
      const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
      if (!lf) break;
      p = static_cast<const char*>(lf) + 1;
      if (p == end) break;
      if (*p == '.') {
        out.append(run, p);
        out.push_back('.');
        run = p;
      }
    }
    out.append(run, end);
    at_line_start_ = end[-1] == '\n';
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
