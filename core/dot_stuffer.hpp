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
  /// Whether append() would copy `chunk` unchanged: no line in it starts
  /// with a dot. Such a chunk may be sent as it is, then passed().
  bool verbatim(std::string_view chunk) const {
    if (chunk.empty()) return true;
    if (at_line_start_ && chunk.front() == '.') return false;
    const char* p = chunk.data();
    const char* const end = p + chunk.size();
    for (;;) {
      const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
      if (!lf) return true;
      p = static_cast<const char*>(lf) + 1;
      if (p == end) return true;
      if (*p == '.') return false;
    }
  }
  /// Notes a verbatim() chunk sent without append().
  void passed(std::string_view chunk) {
    if (!chunk.empty()) at_line_start_ = chunk.back() == '\n';
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
