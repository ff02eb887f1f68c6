#pragma once
// Access checks tried as another user: `nobody`, in a child process that
// became it (base::lines_as_user). Only root can: elsewhere the helpers
// say so and the test returns early.

#include "base/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sdps::testing {

/// `work`'s lines, run as nobody; nullopt when this process is not root.
inline std::optional<std::vector<std::string>> as_nobody(const std::function<std::vector<std::string>()>& work) {
  if (::geteuid() != 0 || !::getpwnam("nobody")) return std::nullopt;
  return base::lines_as_user("nobody", work);
}

/// nobody's primary group, for files a test gives it through their group.
inline gid_t nobody_group() {
  const passwd* pw = ::getpwnam("nobody");
  return pw ? pw->pw_gid : 65534;
}

}  // namespace sdps::testing
