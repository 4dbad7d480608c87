// rec's on/off switches in the environment (REC_SYSCALL_BUFFER=off & co):
// on unless set to off, 0, no or false. Read in one place so that every
// switch takes the same spellings.
#pragma once

#include <cstdlib>
#include <string_view>

namespace rec {

inline bool offByEnvironment(const char* name) {
  const char* value = std::getenv(name);
  if (!value) return false;
  const std::string_view s(value);
  return s == "off" || s == "0" || s == "no" || s == "false";
}

}  // namespace rec
