// The gdb remote serial protocol's framing, independent of any socket or
// target: packets are `$payload#xx` (xx = the payload's byte sum mod 256 in
// hex), acknowledged with `+` / `-` until both sides agree on no-ack mode;
// binary payloads escape `#`, `$`, `}` and `*` as `}` followed by the byte
// xor 0x20; a lone 0x03 byte between packets asks the target to stop.
//
// PacketReader turns an untrusted byte stream into these items. It never
// trusts a length: a packet longer than kMaxPacketSize is discarded (and
// reported as bad) instead of growing a buffer without bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rec::gdb {

// The largest packet accepted from gdb (and announced as PacketSize).
inline constexpr size_t kMaxPacketSize = 64 * 1024;

struct Received {
  enum class Kind {
    Packet,     // a well-formed packet: payload (escapes still in place)
    BadPacket,  // a packet with a wrong checksum or too long: answer `-`
    Ack,        // `+`
    Nack,       // `-`: resend the last packet
    Interrupt,  // 0x03
  };
  Kind kind;
  std::string payload;
};

class PacketReader {
 public:
  // Feeds bytes from the connection; complete items are queued.
  void feed(std::string_view bytes);
  // The next complete item, if any.
  std::optional<Received> next();

 private:
  enum class State { Idle, Payload, Checksum1, Checksum2 };
  State state_ = State::Idle;
  std::string payload_;
  bool tooLong_ = false;
  uint8_t sum_ = 0;
  char checksum_[2] = {};
  std::vector<Received> queue_;
  size_t queueHead_ = 0;
};

// `$payload#xx` with `#`, `$`, `}` and `*` in the payload escaped: gdb
// undoes escapes in every packet it reads (and would take a bare `*` for
// run-length encoding), so any reply, binary or not, goes through here.
std::string framePacket(std::string_view payload);

// Undoes the `}` escapes of a binary payload (X, vFile:pwrite). nullopt when
// the payload ends inside an escape.
std::optional<std::string> unescapeBinary(std::string_view data);

// Hex helpers. Parsing is strict: nullopt on any non-hex digit, on
// overflow, or on an empty string.
std::string toHex(std::span<const uint8_t> bytes);
std::string toHex(std::string_view bytes);
std::optional<std::vector<uint8_t>> fromHex(std::string_view hex);
std::optional<uint64_t> parseHexNumber(std::string_view hex);
// A value as `bytes` little-endian bytes in hex (register contents).
std::string littleEndianHex(uint64_t value, size_t bytes);

// Splits `s` at each `separator`.
std::vector<std::string_view> split(std::string_view s, char separator);

}  // namespace rec::gdb
