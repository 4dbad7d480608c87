// Errors shared by recorder and replayer. Each carries the exit status rec
// should end with, and what() is one line for the user.
#pragma once

#include <stdexcept>
#include <string>

namespace rec {

class RecError : public std::runtime_error {
 public:
  RecError(int exitCode, const std::string& message)
      : std::runtime_error(message), exitCode_(exitCode) {}
  int exitCode() const { return exitCode_; }

 private:
  int exitCode_;
};

// Throws RecError(kExitInternal-like code) with strerror(errno) appended.
[[noreturn]] void throwErrno(int exitCode, const std::string& what);

}  // namespace rec
