// A whole file mapped read-only: reading a large file (a library, a cached
// blob) this way costs no buffer to zero and no copy. Populated up front:
// one fault per page costs more than the whole read in a VM.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <span>
#include <string>
#include <utility>

namespace rec {

class FileMapping {
 public:
  FileMapping() = default;
  // Maps the file open at fd from offset 0 (the fd may be closed afterwards).
  // Empty when it cannot be mapped or is empty.
  explicit FileMapping(int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) return;
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ,
                     MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) return;
    data_ = static_cast<const std::byte*>(p);
    size_ = static_cast<size_t>(st.st_size);
  }
  static FileMapping open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    FileMapping m(fd);
    ::close(fd);
    return m;
  }
  FileMapping(FileMapping&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  FileMapping& operator=(FileMapping&& o) noexcept {
    if (this != &o) {
      unmap();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;
  ~FileMapping() { unmap(); }

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::span<const uint8_t> u8() const { return {reinterpret_cast<const uint8_t*>(data_), size_}; }
  bool empty() const { return size_ == 0; }

 private:
  void unmap() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rec
