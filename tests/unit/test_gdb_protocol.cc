// The gdb remote protocol's framing (debugger/gdb_protocol.h): whatever
// bytes arrive, the reader yields well-formed packets, reports the rest as
// bad, and never buffers more than a packet's worth.
#include <catch2/catch.hpp>
#include <random>

#include "gdb_protocol.h"
#include "gdb_server.h"

using namespace rec::gdb;

namespace {

std::vector<Received> readAll(PacketReader& reader) {
  std::vector<Received> out;
  while (auto r = reader.next()) out.push_back(std::move(*r));
  return out;
}

}  // namespace

TEST_CASE("gdb packets: framing round trip with escapes", "[gdb]") {
  std::string payload = std::string("a$b#c}d*e") + '\0' + "\x7f";
  std::string framed = framePacket(payload);
  // '$', '#', '}' and '*' never appear bare inside the frame.
  std::string inner = framed.substr(1, framed.size() - 4);
  CHECK(inner.find_first_of("$#*") == std::string::npos);
  PacketReader reader;
  reader.feed(framed);
  auto items = readAll(reader);
  REQUIRE(items.size() == 1);
  CHECK(items[0].kind == Received::Kind::Packet);
  auto unescaped = unescapeBinary(items[0].payload);
  REQUIRE(unescaped);
  CHECK(*unescaped == payload);
}

TEST_CASE("gdb packets: acks, interrupts and packets split anywhere", "[gdb]") {
  std::string stream = "+" + framePacket("qSupported:multiprocess+") + "\x03-" + framePacket("g");
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    PacketReader reader;
    reader.feed(std::string_view(stream).substr(0, cut));
    reader.feed(std::string_view(stream).substr(cut));
    auto items = readAll(reader);
    REQUIRE(items.size() == 5);
    CHECK(items[0].kind == Received::Kind::Ack);
    CHECK(items[1].kind == Received::Kind::Packet);
    CHECK(items[1].payload == "qSupported:multiprocess+");
    CHECK(items[2].kind == Received::Kind::Interrupt);
    CHECK(items[3].kind == Received::Kind::Nack);
    CHECK(items[4].payload == "g");
  }
}

TEST_CASE("gdb packets: bad checksums, bad digits, restarts and oversized packets", "[gdb]") {
  PacketReader reader;
  reader.feed("$g#00");         // wrong sum
  reader.feed("$g#zz");         // not hex
  reader.feed("$abc$m0,4#fd");  // a packet restarted: the first is lost
  reader.feed("$" + std::string(kMaxPacketSize + 10, 'A') + "#00");
  reader.feed(framePacket("?"));
  auto items = readAll(reader);
  REQUIRE(items.size() == 6);
  CHECK(items[0].kind == Received::Kind::BadPacket);
  CHECK(items[1].kind == Received::Kind::BadPacket);
  CHECK(items[2].kind == Received::Kind::BadPacket);
  CHECK(items[3].kind == Received::Kind::Packet);
  CHECK(items[3].payload == "m0,4");
  CHECK(items[4].kind == Received::Kind::BadPacket);
  CHECK(items[5].payload == "?");
}

TEST_CASE("gdb packets: random bytes never crash the reader or grow it", "[gdb]") {
  std::mt19937 random(12345);
  PacketReader reader;
  size_t packets = 0;
  for (int round = 0; round < 200; ++round) {
    std::string junk(1 + random() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(random() % 256);
    reader.feed(junk);
    for (auto& item : readAll(reader)) {
      CHECK(item.payload.size() <= kMaxPacketSize);
      packets += item.kind == Received::Kind::Packet;
    }
  }
  // Still in step afterwards.
  reader.feed("#00" + framePacket("vCont?"));
  auto items = readAll(reader);
  REQUIRE(!items.empty());
  CHECK(items.back().payload == "vCont?");
  (void)packets;
}

TEST_CASE("gdb packets: hex parsing is strict", "[gdb]") {
  CHECK(parseHexNumber("7fffffffe000") == 0x7fffffffe000ull);
  CHECK(!parseHexNumber(""));
  CHECK(!parseHexNumber("12g4"));
  CHECK(!parseHexNumber("10000000000000000"));  // 17 digits: overflow
  CHECK(fromHex("00ff10") == std::vector<uint8_t>{0, 255, 16});
  CHECK(!fromHex("abc"));
  CHECK(!fromHex("zz"));
  CHECK(littleEndianHex(0x1122334455667788ull, 8) == "8877665544332211");
  CHECK(toHex(std::string("\x01\xab", 2)) == "01ab");
  CHECK(!unescapeBinary("ab}"));
  CHECK(split("a,b,,c", ',').size() == 4);
}

TEST_CASE("gdb signals: Linux numbers map to gdb's and back", "[gdb]") {
  CHECK(rec::dbg::gdbSignalFromHost(SIGSEGV) == 11);
  CHECK(rec::dbg::gdbSignalFromHost(SIGBUS) == 10);
  CHECK(rec::dbg::gdbSignalFromHost(SIGUSR1) == 30);
  CHECK(rec::dbg::gdbSignalFromHost(SIGCHLD) == 20);
  for (int s = 1; s <= 64; ++s) {
    if (s == 16) continue;  // SIGSTKFLT has no gdb number
    CHECK(rec::dbg::hostSignalFromGdb(rec::dbg::gdbSignalFromHost(s)) == s);
  }
}
