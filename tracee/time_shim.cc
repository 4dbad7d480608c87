#include "time_shim.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "errors.h"
#include "exit_codes.h"

extern "C" const char rec_time_shim_image[];
extern "C" const char rec_time_shim_image_end[];

namespace rec {

static_assert(REC_SHIM_LOG_CAPACITY > 256);
static_assert(REC_SHIM_IMAGE >= kScratchAddress + kScratchSize);
static_assert(REC_SHIM_UNTRACED_SYSCALL == kScratchShimSyscall);

std::span<const std::byte> timeShimImage() {
  static const std::span<const std::byte> image = [] {
    auto* begin = reinterpret_cast<const std::byte*>(rec_time_shim_image);
    size_t size = static_cast<size_t>(rec_time_shim_image_end - rec_time_shim_image);
    if (size > REC_SHIM_IMAGE_MAX)
      throw RecError(kExitInternal, "rec's time shim outgrew its place");
    return std::span(begin, size);
  }();
  return image;
}

TimeLog::TimeLog() {
  fd_.reset(static_cast<int>(::syscall(SYS_memfd_create, "rec-time-log", MFD_CLOEXEC)));
  if (!fd_.valid() || ::ftruncate(fd_.get(), REC_SHIM_LOG_SIZE) != 0)
    throwErrno(kExitInternal, "cannot make the time shim's log");
  void* p = ::mmap(nullptr, REC_SHIM_LOG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) throwErrno(kExitInternal, "cannot map the time shim's log");
  log_ = static_cast<rec_shim_log*>(p);
  log_->capacity = REC_SHIM_LOG_CAPACITY;
}

TimeLog::~TimeLog() {
  if (log_) ::munmap(log_, REC_SHIM_LOG_SIZE);
}

namespace time_shim {

void writeImage(Task& task) {
  auto image = timeShimImage();
  task.writeForced(kTimeShimImage, image.data(), image.size());
}

bool startLog(Task& task, TimeShimSpace& space, uint32_t mode, StraySignals& strays) {
  auto log = std::make_unique<TimeLog>();
  if (!mapRecMemoryAt(task, log->fd(), REC_SHIM_LOG, REC_SHIM_LOG_SIZE, "the time shim's log",
                      strays))
    return false;
  logMapped(task, space, std::move(log), mode);
  return true;
}

void logMapped(Task& task, TimeShimSpace& space, std::unique_ptr<TimeLog> log, uint32_t mode) {
  task.writeForced(REC_SHIM_CONTROL + offsetof(rec_shim_control, mode), &mode, sizeof mode);
  space.log = std::move(log);
}

namespace {

// Each shim function as the syscall it stands for: its number and how many
// bytes it stores through each pointer argument.
struct Function {
  uint32_t shim;
  int syscall;
  unsigned bytes;
};
constexpr Function kFunctions[] = {
    {REC_SHIM_CLOCK_GETTIME, SYS_clock_gettime, 16},
    {REC_SHIM_GETTIMEOFDAY, SYS_gettimeofday, 16},
    {REC_SHIM_TIME, SYS_time, 8},
    {REC_SHIM_GETCPU, SYS_getcpu, 4},
};

}  // namespace

// clock_gettime's pointers follow its clock argument; the others' come first.
void describeEntry(const rec_shim_entry& entry, schema::SyscallEvent::Builder out) {
  const Function* f = nullptr;
  for (const Function& candidate : kFunctions)
    if (candidate.shim == entry.function) f = &candidate;
  if (!f)  // the program wrote over the log
    throw RecError(kExitInternal, "rec: the time shim's log was overwritten by the program");
  out.setNumber(f->syscall);
  out.setBuffered(true);
  auto args = out.initArgs(6);
  unsigned first = entry.function == REC_SHIM_CLOCK_GETTIME ? 1 : 0;
  if (first) args.set(0, static_cast<uint64_t>(static_cast<int64_t>(entry.clock)));
  args.set(first, entry.args[0]);
  args.set(first + 1, entry.args[1]);
  out.setResult(entry.result);
  out.setShimData(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(entry.data), 16));
  // The memory it wrote, for rec dump (replay hands back shimData): from the
  // first data word at the first pointer, from the second at the second.
  unsigned count = (entry.args[0] != 0) + (entry.args[1] != 0);
  auto writes = out.initWrites(count);
  unsigned w = 0;
  for (unsigned i = 0; i < 2; ++i) {
    if (!entry.args[i]) continue;
    writes[w].setAddress(entry.args[i]);
    writes[w++].setData(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(&entry.data[i]), f->bytes));
  }
}

rec_shim_entry entryFromEvent(schema::SyscallEvent::Reader event) {
  const Function* f = nullptr;
  for (const Function& candidate : kFunctions)
    if (candidate.syscall == event.getNumber()) f = &candidate;
  if (!f)
    throw RecError(kExitBadTrace,
                   fmt::format("rec: a buffered event for syscall {}, which the time shim "
                               "never answers",
                               event.getNumber()));
  auto args = event.getArgs();
  auto data = event.getShimData();
  auto arg = [&](unsigned i) { return i < args.size() ? args[i] : 0; };
  rec_shim_entry entry{};
  entry.function = f->shim;
  unsigned first = entry.function == REC_SHIM_CLOCK_GETTIME ? 1 : 0;
  if (first) entry.clock = static_cast<int32_t>(arg(0));
  entry.args[0] = arg(first);
  entry.args[1] = arg(first + 1);
  if (data.size() != sizeof entry.data)
    throw RecError(kExitBadTrace, "rec: a buffered event without the time shim's data");
  std::memcpy(entry.data, data.begin(), sizeof entry.data);
  entry.result = event.getResult();
  return entry;
}

bool inShimCode(uint64_t ip) {
  // The scratch page's `syscall; ret` too: the shim calls it while recording.
  return (ip >= kTimeShimImage && ip < kTimeShimImage + REC_SHIM_IMAGE_MAX) ||
         (ip >= kScratchShimSyscall && ip <= kScratchShimSyscallIp);
}

namespace {

// Off in the task's address space (a new thread) or in a fork's child (its
// copy of the control page).
void turnOff(Task& task) {
  uint32_t off = REC_SHIM_OFF;
  task.writeForced(REC_SHIM_CONTROL + offsetof(rec_shim_control, mode), &off, sizeof off);
}

}  // namespace

std::shared_ptr<TimeShimSpace> forChild(const std::shared_ptr<TimeShimSpace>& space, Task& parent,
                                        Task& child, uint64_t flags) {
  if (!space) return nullptr;
  if (flags & CLONE_VM) {
    if (!(flags & CLONE_VFORK) && !space->disabled) {
      space->disabled = true;
      if (space->log) turnOff(parent);
    }
    return space;
  }
  if (space->log && !space->disabled) turnOff(child);
  return std::make_shared<TimeShimSpace>();
}

}  // namespace time_shim

}  // namespace rec
