// `rec dump`: the trace's events, one line each, strace-like or as JSON.
#include <capnp/compat/json.h>
#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "buffered_calls.h"
#include "commands.h"
#include "trace_command.h"

namespace rec {
namespace {

constexpr size_t kHexdumpLimit = 64;  // bytes shown per captured write

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Data fields as hex strings rather than the codec's default number arrays.
class HexDataHandler final : public capnp::JsonCodec::Handler<capnp::Data> {
 public:
  void encode(const capnp::JsonCodec&, capnp::Data::Reader input,
              capnp::JsonValue::Builder output) const override {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string s;
    s.reserve(input.size() * 2);
    for (kj::byte b : input) {
      s += kDigits[b >> 4];
      s += kDigits[b & 15];
    }
    output.setString(s);
  }
  capnp::Orphan<capnp::Data> decode(const capnp::JsonCodec&, capnp::JsonValue::Reader,
                                    capnp::Orphanage) const override {
    KJ_UNIMPLEMENTED("rec dump only encodes");
  }
};

std::string rawResult(int64_t result) {
  if (result < 0 && result >= -4095) {
    std::string_view name = sys::errnoName(static_cast<int>(-result));
    return "-1 " + (name.empty() ? "errno " + std::to_string(-result) : std::string(name));
  }
  return std::to_string(result);
}

// A patch of an rdtsc site that mapped the process's time log first.
bool startsTimeLog(capnp::List<schema::BufferPatch>::Reader patches) {
  for (auto p : patches)
    if (p.getStartsTimeLog()) return true;
  return false;
}

// A patch that mapped the process's syscall buffer first.
bool startsBuffer(capnp::List<schema::BufferPatch>::Reader patches) {
  for (auto p : patches)
    if (p.getStartsBuffer()) return true;
  return false;
}

std::string syscallLine(schema::SyscallEvent::Reader s) {
  std::array<uint64_t, 6> args{};
  auto argList = s.getArgs();
  for (unsigned i = 0; i < args.size() && i < argList.size(); ++i) args[i] = argList[i];
  std::string out;
  const sys::SyscallRow* row = sys::findSyscall(s.getNumber());
  if (s.getCompat32() && s.getRefused()) row = nullptr;  // an i386 number rec does not know
  if (row) {
    std::vector<std::string> strings;
    for (auto t : s.getStrings()) strings.emplace_back(t.cStr(), t.size());
    out = sys::formatCall(*row, args, strings) + " = " + sys::formatResult(*row, s.getResult());
  } else {
    out = (s.getCompat32() ? "syscall32_" : "syscall_") + std::to_string(s.getNumber()) + "(";
    for (unsigned i = 0; i < args.size(); ++i) out += (i ? ", " : "") + hex(args[i]);
    out += ") = " + rawResult(s.getResult());
  }
  uint64_t captured = 0, zeros = 0;
  for (auto w : s.getWrites()) {
    captured += w.getData().size() + w.getZeros();
    zeros += w.getZeros();
  }
  if (captured > 0)
    out += " (" + std::to_string(captured) + " bytes captured" +
           (zeros == captured ? ", all zero"
            : zeros           ? ", " + std::to_string(zeros) + " zero"
                              : "") +
           ")";
  if (s.getRefused()) out += " (refused by rec)";
  if (s.getInSyscallBuffer() && s.hasMapping())
    out += " [" + std::string(s.getMapping().getPath().cStr()) + "]";
  if (s.getInSyscallBuffer())
    out += " [syscall buffer, no stop]";
  else if (s.getBuffered())
    out += " [vdso, no stop]";
  if (s.hasBufferPatch()) out += fmt::format(" [site {:#x} patched]", s.getBufferPatch().getSite());
  if (s.getBufferPatches().size() > 0)
    out += fmt::format(" [{} sites patched ahead]", s.getBufferPatches().size());
  if (s.getStartsTimeLog() || startsTimeLog(s.getBufferPatches())) out += " [time shim on]";
  if (s.getStartsBuffer() || startsBuffer(s.getBufferPatches())) out += " [buffer mapped]";
  if (s.getProcessCpu() >= 0) out += fmt::format(" [process moved to cpu {}]", s.getProcessCpu());
  if (s.getCompat32()) out += " [int 0x80]";
  return out;
}

std::string syscallName(int nr) {
  if (const sys::SyscallRow* row = sys::findSyscall(nr)) return std::string(row->name);
  return "syscall_" + std::to_string(nr);
}

std::string dispositionText(schema::SignalDisposition d) {
  switch (d) {
    case schema::SignalDisposition::DELIVERED:
      return "delivered";
    case schema::SignalDisposition::INJECT_BEFORE_SYSCALL:
      return "injected before syscall";
    case schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT:
      return "injected at syscall exit";
    case schema::SignalDisposition::AT_POINT:
      return "delivered in user code";
    case schema::SignalDisposition::BY_PTRACER:
      return "delivered by its ptracer";
  }
  return "disposition " + std::to_string(static_cast<int>(d));
}

// The name a JSON consumer filters on: the syscall's or the signal's; empty
// for other kinds, whose member name already says what they are.
std::string eventName(schema::Event::Reader e) {
  switch (e.which()) {
    case schema::Event::SYSCALL:
      return syscallName(e.getSyscall().getNumber());
    case schema::Event::SYSCALL_ENTER:
      return syscallName(e.getSyscallEnter().getNumber());
    case schema::Event::SIGNAL:
      return cli::signalText(e.getSignal().getSigno());
    default:
      return "";
  }
}

std::string eventText(schema::Event::Reader e) {
  switch (e.which()) {
    case schema::Event::SYSCALL:
      return syscallLine(e.getSyscall());
    case schema::Event::SYSCALL_ENTER:
      return "<... " + syscallName(e.getSyscallEnter().getNumber()) + " entered, blocked>";
    case schema::Event::SIGNAL: {
      auto s = e.getSignal();
      return "--- " + cli::signalText(s.getSigno()) + " " + dispositionText(s.getDisposition()) +
             (s.getSynchronous() ? " (synchronous)" : "") +
             (s.getPtraceStop() ? " (ptrace stop)" : "") + " at " + hex(s.getIp()) + " ---" +
             (s.hasFrameMemory() ? fmt::format(" [handler frame of {} bytes at {:#x}]",
                                               s.getFrameMemory().getData().size(),
                                               s.getFrameMemory().getAddress())
                                 : "");
    }
    case schema::Event::EXEC: {
      auto x = e.getExec();
      auto name = x.getFilename();
      return "execve(" + sys::quoted(std::string_view(name.cStr(), name.size())) + ") -> " +
             std::to_string(x.getMappings().size()) + " mappings, stack " +
             std::to_string(x.getStackImage().size()) + " bytes" +
             (x.getBufferPatches().size() > 0
                  ? fmt::format(" [{} sites patched ahead]", x.getBufferPatches().size())
                  : "") +
             (startsTimeLog(x.getBufferPatches()) ? " [time shim on]" : "") +
             (startsBuffer(x.getBufferPatches()) ? " [buffer mapped]" : "") +
             (x.getCpu() >= 0 ? fmt::format(" [cpu {}]", x.getCpu()) : "");
    }
    case schema::Event::RDTSC: {
      auto r = e.getRdtsc();
      // (answered by the time shim at a patched site: no stop)
      const std::string shim = r.getInLog()
                                   ? fmt::format(" [site {:#x}, time shim, no stop]", r.getIp())
                               : r.getStartsTimeLog() ? " [time shim on]"
                                                      : "";
      if (r.getIsRdtscp())
        return "rdtscp = " + hex(r.getValue()) + ", aux " + hex(r.getAux()) + shim;
      return "rdtsc = " + hex(r.getValue()) + shim;
    }
    case schema::Event::EXIT: {
      auto x = e.getExit();
      return std::string("+++ ") + (x.getThreadOnly() ? "thread " : "") +
             cli::describeWaitStatus(x.getWaitStatus()) + " +++";
    }
    case schema::Event::BUFFERED_SYSCALLS:  // (runDump shows each call instead)
      return "<" + std::to_string(e.getBufferedSyscalls().getCount()) + " buffered syscalls>";
    case schema::Event::PREEMPT: {
      auto raw = e.getPreempt().getRegisters().getRaw();
      uint64_t ip = 0;
      if (raw.size() >= 17 * 8) std::memcpy(&ip, raw.begin() + 16 * 8, 8);  // user_regs_struct.rip
      return "--- preempted at " + hex(ip) + " ---";
    }
  }
  return "<unknown event kind " + std::to_string(static_cast<int>(e.which())) + ">";
}

// Up to kHexdumpLimit bytes, 16 per line, with an ASCII column.
void hexdump(std::string& out, uint64_t address, capnp::Data::Reader data) {
  out += "    " + hex(address) + ", " + std::to_string(data.size()) + " bytes:\n";
  size_t shown = std::min(data.size(), kHexdumpLimit);
  for (size_t line = 0; line < shown; line += 16) {
    char buf[128];
    int n = std::snprintf(buf, sizeof buf, "      %04zx ", line);
    std::string ascii;
    for (size_t i = line; i < line + 16; ++i) {
      if (i < shown) {
        n += std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), " %02x", data[i]);
        ascii += (data[i] >= 0x20 && data[i] < 0x7f) ? static_cast<char>(data[i]) : '.';
      } else {
        n += std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), "   ");
      }
    }
    out += buf;
    out += "  " + ascii + "\n";
  }
  if (shown < data.size()) out += "      ...\n";
}

}  // namespace

int runDump(const DumpOptions& options) {
  return cli::withTrace(options.tracePath, [&](format::TraceReader& reader) {
    capnp::JsonCodec codec;
    HexDataHandler hexData;
    codec.addTypeHandler(hexData);
    std::string line;
    // `label` is the event's index, or index.k for the k-th call of a batch
    // of buffered syscalls (one event in the trace, one line each here).
    auto show = [&](uint64_t index, int call, schema::Event::Reader event) {
      line.clear();
      if (options.json) {
        // Splice the index (and name) in as the first members of the event's object.
        kj::String json = codec.encode(event);
        std::string_view body(json.cStr(), json.size());
        line = "{\"index\":" + std::to_string(index);
        if (call >= 0) line += ",\"call\":" + std::to_string(call);
        if (std::string name = eventName(event); !name.empty())
          line += ",\"name\":\"" + name + "\"";
        if (body.size() > 2)
          line += "," + std::string(body.substr(1));
        else
          line += "}";
        line += '\n';
      } else {
        line = "#" + std::to_string(index) + (call >= 0 ? "." + std::to_string(call) : "") + " [" +
               std::to_string(event.getTid()) + "] " + eventText(event) + "\n";
        if (options.showWrites && event.isSyscall()) {
          for (auto w : event.getSyscall().getWrites()) hexdump(line, w.getAddress(), w.getData());
        }
      }
      std::cout << line;
    };
    // The paths of the files traced mmaps stored, for the buffered mmaps of
    // them (whose entries name the blob).
    std::map<std::string, std::string> pathOfBlob;
    auto remember = [&](schema::Mapping::Reader m) {
      if (m.getBlobHash().size() == 16 && m.hasPath())
        pathOfBlob.emplace(std::string(reinterpret_cast<const char*>(m.getBlobHash().begin()), 16),
                           m.getPath().cStr());
    };
    while (auto event = reader.nextEvent()) {
      uint64_t index = reader.nextEventIndex() - 1;
      if (!event->isBufferedSyscalls()) {
        if (event->isExec())
          for (auto m : event->getExec().getMappings()) remember(m);
        else if (event->isSyscall() && event->getSyscall().hasMapping())
          remember(event->getSyscall().getMapping());
        show(index, -1, *event);
        continue;
      }
      // Each call as the syscall event it stands for (checked by the reader).
      auto entries = event->getBufferedSyscalls().getEntries();
      int call = 0;
      format::forEachBufferedCall(
          std::span(reinterpret_cast<const std::byte*>(entries.begin()), entries.size()),
          [&](const format::BufferedCallHeader& h, const std::byte* entry) {
            capnp::MallocMessageBuilder msg;
            auto e = msg.initRoot<schema::Event>();
            e.setTid(event->getTid());
            auto s = e.initSyscall();
            s.setNumber(h.number);
            auto args = s.initArgs(6);
            for (unsigned j = 0; j < 6; ++j) args.set(j, h.args[j]);
            s.setResult(h.result);
            s.setBuffered(true);
            s.setInSyscallBuffer(true);
            if (format::bufferedMapsFile(h) && !(h.result < 0 && h.result >= -4095)) {
              // (checked by the reader: the entry holds its file)
              format::BufferedMappedFile f;
              std::memcpy(&f, entry + sizeof h, sizeof f);
              auto m = s.initMapping();
              m.setStart(static_cast<uint64_t>(h.result));
              m.setEnd(static_cast<uint64_t>(h.result) + h.args[1]);
              m.setProt(static_cast<uint32_t>(h.args[2]));
              m.setFlags(static_cast<uint32_t>(h.args[3]));
              m.setOffset(h.args[5]);
              m.setBlobHash(kj::arrayPtr(reinterpret_cast<const kj::byte*>(f.blobHash), 16));
              auto it = pathOfBlob.find(
                  std::string(reinterpret_cast<const char*>(f.blobHash), sizeof f.blobHash));
              m.setPath(it != pathOfBlob.end() ? it->second : "?");
            }
            std::vector<format::BufferedWrite> writes;
            format::forEachBufferedWrite(
                h, entry, [&](const format::BufferedWrite& w) { writes.push_back(w); });
            auto list = s.initWrites(static_cast<unsigned>(writes.size()));
            for (unsigned j = 0; j < writes.size(); ++j) {
              list[j].setAddress(writes[j].address);
              if (writes[j].data)
                list[j].setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(writes[j].data),
                                             writes[j].length));
              else
                list[j].setZeros(writes[j].length);
            }
            show(index, call++, e.asReader());
          });
    }
    cli::noteIfCutShort(reader, options.tracePath);
    return 0;
  });
}

}  // namespace rec
