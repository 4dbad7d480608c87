// Facts about this machine that hold until it reboots (what rec's probes of
// the CPU and the kernel found), kept in rec's cache directory
// (tracee/cache_dir.h) under machine/, each file headed by the boot id
// (/proc/sys/kernel/random/boot_id): a probe that costs a trap to the
// hypervisor per instruction, or a child process, then runs once per boot
// instead of at every `rec record` and `rec replay`.
#pragma once

#include <optional>
#include <string>

namespace rec {

// What writeBootCache(name, ...) stored during this boot; nullopt when
// nothing was, the cache is off or unreadable, or the machine has rebooted.
std::optional<std::string> readBootCache(const std::string& name);
// Stores `contents` for this boot (atomically: a temporary file renamed).
// Failures are ignored: the caller probes again next time.
void writeBootCache(const std::string& name, const std::string& contents);
// The directory in use (as the environment says now); empty when the cache
// is off.
std::string bootCacheDir();

}  // namespace rec
