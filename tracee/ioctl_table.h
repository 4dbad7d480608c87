// ioctl requests rec knows by name: legacy requests (terminals, virtual
// consoles, keyboards, serial lines, sockets) whose numbers carry no _IOC
// size, requests whose encoded size is not what the kernel writes, and
// requests whose output size depends on the argument's contents. Anything
// else writes _IOC_SIZE bytes when its direction has _IOC_READ. One table
// serves both the recorder (outputRanges) and `rec dump` (the names).
#pragma once

#include <cstdint>
#include <string_view>

namespace rec::sys {

enum class IoctlOut : uint8_t {
  Fixed,   // `size` bytes at the argument (0: writes nothing)
  Fiemap,  // struct fiemap (32 bytes) then fm_mapped_extents extents of 56 bytes
  Ifconf,  // struct ifconf (16 bytes) and ifc_len bytes at its ifc_buf
};

struct IoctlRow {
  uint32_t request;
  std::string_view name;
  uint32_t size = 0;
  IoctlOut kind = IoctlOut::Fixed;
};

// The row for `request`, or nullptr when rec goes by its _IOC encoding.
const IoctlRow* findIoctl(uint32_t request);

}  // namespace rec::sys
