// Which file descriptors of a process refer to the stdout or stderr rec was
// started with. Writes through them are marked in the trace so that replay
// shows the program's output on rec's own stdout/stderr. Shared between the
// tasks of a process (and between processes created with CLONE_FILES).
#pragma once

#include <map>
#include <memory>
#include <vector>

namespace rec {

class OutputFds {
 public:
  static std::shared_ptr<OutputFds> initial() {
    auto t = std::make_shared<OutputFds>();
    t->origin_[1] = 1;
    t->origin_[2] = 2;
    return t;
  }
  // 1 for stdout, 2 for stderr, 0 for anything else.
  int originOf(long fd) const {
    auto it = origin_.find(fd);
    return it == origin_.end() ? 0 : it->second;
  }
  void duplicate(long from, long to) {
    if (from == to) return;
    int o = originOf(from);
    if (o)
      origin_[to] = o;
    else
      origin_.erase(to);
  }
  // `fd` is a copy of an fd whose origin is `origin` (0: neither).
  void assign(long fd, int origin) {
    if (origin)
      origin_[fd] = origin;
    else
      origin_.erase(fd);
  }
  void close(long fd) { origin_.erase(fd); }
  void closeRange(unsigned long first, unsigned long last) {
    for (auto it = origin_.lower_bound(static_cast<long>(first));
         it != origin_.end() && static_cast<unsigned long>(it->first) <= last;)
      it = origin_.erase(it);
  }
  std::shared_ptr<OutputFds> copy() const { return std::make_shared<OutputFds>(*this); }
  // Every fd that is stdout or stderr.
  std::vector<long> fds() const {
    std::vector<long> out;
    for (auto [fd, origin] : origin_) out.push_back(fd);
    return out;
  }

 private:
  std::map<long, int> origin_;
};

}  // namespace rec
