// libFuzzer target for the trace reader. Built with -DREC_FUZZ=ON and clang;
// the reader is compiled with REC_FORMAT_FUZZING so that mutated inputs get
// past the checksums into zstd and Cap'n Proto decoding. See README.md.
#include <kj/string.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "trace_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                               reinterpret_cast<const std::byte*>(data) + size);
  try {
    auto reader = rec::format::TraceReader::openBytes(std::move(bytes), "fuzz.rec");
    // Touch everything a command would: the header, every event's fields and
    // every blob (the blob hashes come from the events' mappings).
    (void)kj::str(reader->header());
    if (auto footer = reader->footer()) (void)kj::str(*footer);
    (void)reader->stats();
    (void)reader->cutShortReason();
    while (auto event = reader->nextEvent()) {
      (void)kj::str(*event);
      if (event->isExec()) {
        for (auto m : event->getExec().getMappings()) {
          auto h = m.getBlobHash();
          if (h.size() != 16) continue;
          auto hash = rec::format::BlobHash::fromBytes(
              std::span(reinterpret_cast<const std::byte*>(h.begin()), h.size()));
          if (reader->hasBlob(hash)) (void)reader->readBlob(hash);
        }
      }
    }
    reader->rewind();
    (void)reader->nextEvent();
  } catch (const rec::format::FormatError&) {
    // Expected for malformed input; anything else escaping is a finding.
  }
  return 0;
}
