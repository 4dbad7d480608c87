#include "gdb_protocol.h"

#include <fmt/format.h>

namespace rec::gdb {

namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool needsEscape(char c) {
  return c == '#' || c == '$' || c == '}' || c == '*';
}

}  // namespace

void PacketReader::feed(std::string_view bytes) {
  for (char c : bytes) {
    switch (state_) {
      case State::Idle:
        if (c == '$') {
          state_ = State::Payload;
          payload_.clear();
          sum_ = 0;
          tooLong_ = false;
        } else if (c == '+') {
          queue_.push_back({Received::Kind::Ack, {}});
        } else if (c == '-') {
          queue_.push_back({Received::Kind::Nack, {}});
        } else if (c == '\x03') {
          queue_.push_back({Received::Kind::Interrupt, {}});
        }
        // Anything else between packets is noise and ignored, as gdbserver does.
        break;
      case State::Payload:
        if (c == '#') {
          state_ = State::Checksum1;
        } else if (c == '$') {
          // A new packet started before this one ended: the old one is lost.
          queue_.push_back({Received::Kind::BadPacket, {}});
          payload_.clear();
          sum_ = 0;
          tooLong_ = false;
        } else {
          sum_ = static_cast<uint8_t>(sum_ + static_cast<uint8_t>(c));
          if (payload_.size() < kMaxPacketSize)
            payload_.push_back(c);
          else
            tooLong_ = true;
        }
        break;
      case State::Checksum1:
        checksum_[0] = c;
        state_ = State::Checksum2;
        break;
      case State::Checksum2: {
        checksum_[1] = c;
        state_ = State::Idle;
        int hi = hexDigit(checksum_[0]), lo = hexDigit(checksum_[1]);
        bool good = hi >= 0 && lo >= 0 && (hi << 4 | lo) == sum_ && !tooLong_;
        if (good)
          queue_.push_back({Received::Kind::Packet, std::move(payload_)});
        else
          queue_.push_back({Received::Kind::BadPacket, {}});
        payload_.clear();
        break;
      }
    }
  }
}

std::optional<Received> PacketReader::next() {
  if (queueHead_ >= queue_.size()) {
    queue_.clear();
    queueHead_ = 0;
    return std::nullopt;
  }
  return std::move(queue_[queueHead_++]);
}

std::string framePacket(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 4);
  out.push_back('$');
  uint8_t sum = 0;
  for (char c : payload) {
    if (needsEscape(c)) {
      out.push_back('}');
      sum = static_cast<uint8_t>(sum + '}');
      c = static_cast<char>(c ^ 0x20);
    }
    out.push_back(c);
    sum = static_cast<uint8_t>(sum + static_cast<uint8_t>(c));
  }
  out += fmt::format("#{:02x}", sum);
  return out;
}

std::optional<std::string> unescapeBinary(std::string_view data) {
  std::string out;
  out.reserve(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '}') {
      if (++i >= data.size()) return std::nullopt;
      out.push_back(static_cast<char>(data[i] ^ 0x20));
    } else {
      out.push_back(data[i]);
    }
  }
  return out;
}

std::string toHex(std::span<const uint8_t> bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

std::string toHex(std::string_view bytes) {
  return toHex(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::optional<std::vector<uint8_t>> fromHex(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hexDigit(hex[2 * i]), lo = hexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::optional<uint64_t> parseHexNumber(std::string_view hex) {
  if (hex.empty() || hex.size() > 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : hex) {
    int d = hexDigit(c);
    if (d < 0) return std::nullopt;
    value = value << 4 | static_cast<uint64_t>(d);
  }
  return value;
}

std::string littleEndianHex(uint64_t value, size_t bytes) {
  std::vector<uint8_t> b(bytes);
  for (size_t i = 0; i < bytes && i < 8; ++i) b[i] = static_cast<uint8_t>(value >> (8 * i));
  return toHex(b);
}

std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(separator, start);
    if (at == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, at - start));
    start = at + 1;
  }
}

}  // namespace rec::gdb
