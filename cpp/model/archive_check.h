// Integrity check of a TorchScript archive before libtorch parses it. libtorch trusts the bytes it
// reads: damaged code or pickles can crash its parsers (a segfault in ScriptTypeParser was seen
// with a few flipped bits). Every zip entry carries a CRC-32, so damage anywhere in an entry, and
// any truncation, is caught here as a typed error instead.
#pragma once

#include <cstdint>
#include <string>

namespace easyroutine {

// Throws a ModelLoad TypedError naming what is wrong: no zip structure, a truncated archive, or the
// first entry whose bytes do not match its CRC-32.
void VerifyArchive(const std::string& path);

// The name of the stored record under a data/ or constants/ folder whose bytes are exactly
// `bytes[0, length)`, or "" when there is none: names the record behind a damaged storage.
std::string FindStorageRecord(const std::string& path, const uint8_t* bytes, uint64_t length);

}  // namespace easyroutine
