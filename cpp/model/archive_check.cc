#include "model/archive_check.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <vector>

#include "js/errors.h"

namespace easyroutine {

namespace {

// CRC-32 (zip's polynomial), slicing-by-8: checking is bounded by disk speed, not by this loop.
class Crc32 {
 public:
  Crc32() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table_[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int t = 1; t < 8; ++t) table_[t][i] = (table_[t - 1][i] >> 8) ^ table_[0][table_[t - 1][i] & 0xFF];
    }
  }

  uint32_t Update(uint32_t crc, const uint8_t* data, size_t n) const {
    crc = ~crc;
    while (n >= 8) {
      uint32_t lo, hi;
      std::memcpy(&lo, data, 4);
      std::memcpy(&hi, data + 4, 4);
      lo ^= crc;
      crc = table_[7][lo & 0xFF] ^ table_[6][(lo >> 8) & 0xFF] ^ table_[5][(lo >> 16) & 0xFF] ^ table_[4][lo >> 24] ^
            table_[3][hi & 0xFF] ^ table_[2][(hi >> 8) & 0xFF] ^ table_[1][(hi >> 16) & 0xFF] ^ table_[0][hi >> 24];
      data += 8;
      n -= 8;
    }
    while (n--) crc = table_[0][(crc ^ *data++) & 0xFF] ^ (crc >> 8);
    return ~crc;
  }

 private:
  std::array<std::array<uint32_t, 256>, 8> table_;
};

uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) { return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint64_t U64(const uint8_t* p) { return static_cast<uint64_t>(U32(p)) | (static_cast<uint64_t>(U32(p + 4)) << 32); }

struct Entry {
  std::string name;
  uint16_t method;
  uint32_t crc;
  uint64_t compressedSize;
  uint64_t localOffset;
};

class ArchiveReader {
 public:
  explicit ArchiveReader(const std::string& path) : path_(path), file_(path, std::ios::binary) {
    if (!file_) Fail("cannot be read");
    file_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(file_.tellg());
  }

  [[noreturn]] void Fail(const std::string& what) const {
    throw TypedError(ErrorKind::ModelLoad, "loadModel: '" + path_ + "' is damaged: " + what);
  }

  std::vector<uint8_t> Read(uint64_t offset, uint64_t length) {
    if (offset > size_ || length > size_ - offset) Fail("it is truncated (a record reaches past the end of the file)");
    std::vector<uint8_t> bytes(length);
    file_.seekg(static_cast<std::streamoff>(offset));
    file_.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(length));
    if (!file_) Fail("it could not be read completely");
    return bytes;
  }

  std::vector<Entry> CentralDirectory() {
    // End of central directory: 22 bytes plus a comment of up to 64 KiB, at the end of the file.
    uint64_t tailLength = std::min<uint64_t>(size_, 22 + 65535);
    std::vector<uint8_t> tail = Read(size_ - tailLength, tailLength);
    int64_t eocd = -1;
    for (int64_t i = static_cast<int64_t>(tail.size()) - 22; i >= 0; --i) {
      if (U32(&tail[i]) == 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) Fail("it is truncated (no zip end-of-central-directory record)");
    const uint8_t* end = &tail[eocd];
    uint64_t count = U16(end + 10);
    uint64_t dirSize = U32(end + 12);
    uint64_t dirOffset = U32(end + 16);
    uint64_t eocdOffset = size_ - tailLength + static_cast<uint64_t>(eocd);
    if (count == 0xFFFF || dirSize == 0xFFFFFFFF || dirOffset == 0xFFFFFFFF) {
      if (eocdOffset < 20) Fail("its zip64 locator is missing");
      std::vector<uint8_t> locator = Read(eocdOffset - 20, 20);
      if (U32(locator.data()) != 0x07064b50) Fail("its zip64 locator is missing");
      std::vector<uint8_t> record = Read(U64(&locator[8]), 56);
      if (U32(record.data()) != 0x06064b50) Fail("its zip64 end-of-central-directory record is missing");
      count = U64(&record[32]);
      dirSize = U64(&record[40]);
      dirOffset = U64(&record[48]);
    }
    std::vector<uint8_t> dir = Read(dirOffset, dirSize);
    std::vector<Entry> entries;
    size_t p = 0;
    for (uint64_t i = 0; i < count; ++i) {
      if (p + 46 > dir.size() || U32(&dir[p]) != 0x02014b50) Fail("its central directory is corrupt (entry " + std::to_string(i) + ")");
      const uint8_t* h = &dir[p];
      Entry entry;
      entry.method = U16(h + 10);
      entry.crc = U32(h + 16);
      entry.compressedSize = U32(h + 20);
      uint64_t uncompressed = U32(h + 24);
      uint16_t nameLength = U16(h + 28), extraLength = U16(h + 30), commentLength = U16(h + 32);
      entry.localOffset = U32(h + 42);
      if (p + 46 + nameLength + extraLength + commentLength > dir.size()) Fail("its central directory is corrupt (entry " + std::to_string(i) + ")");
      entry.name.assign(reinterpret_cast<const char*>(h + 46), nameLength);
      // zip64 extra field: the 64-bit values of the fields set to 0xFFFFFFFF, in this order.
      const uint8_t* extra = h + 46 + nameLength;
      for (size_t e = 0; e + 4 <= extraLength;) {
        uint16_t id = U16(extra + e), length = U16(extra + e + 2);
        if (e + 4 + length > extraLength) break;
        if (id == 0x0001) {
          const uint8_t* v = extra + e + 4;
          size_t used = 0;
          auto next = [&](uint64_t& field) {
            if (used + 8 > length) Fail("its zip64 sizes are corrupt for '" + entry.name + "'");
            field = U64(v + used);
            used += 8;
          };
          if (uncompressed == 0xFFFFFFFF) next(uncompressed);
          if (entry.compressedSize == 0xFFFFFFFF) next(entry.compressedSize);
          if (entry.localOffset == 0xFFFFFFFF) next(entry.localOffset);
        }
        e += 4 + length;
      }
      entries.push_back(std::move(entry));
      p += 46 + nameLength + extraLength + commentLength;
    }
    if (entries.empty()) Fail("the zip archive holds no entries");
    return entries;
  }

  uint64_t DataOffset(const Entry& entry) {
    std::vector<uint8_t> local = Read(entry.localOffset, 30);
    if (U32(local.data()) != 0x04034b50) Fail("the local header of '" + entry.name + "' is corrupt");
    return entry.localOffset + 30 + U16(&local[26]) + U16(&local[28]);
  }

  void VerifyEntry(const Entry& entry, const Crc32& crc32) {
    uint64_t dataOffset = DataOffset(entry);
    if (entry.method != 0) return;  // compressed entries are checked by the decompressor
    if (dataOffset > size_ || entry.compressedSize > size_ - dataOffset) Fail("it is truncated inside '" + entry.name + "'");
    file_.seekg(static_cast<std::streamoff>(dataOffset));
    std::vector<uint8_t> chunk(std::min<uint64_t>(entry.compressedSize, 1 << 20));
    uint32_t crc = 0;
    for (uint64_t left = entry.compressedSize; left > 0;) {
      auto n = static_cast<std::streamsize>(std::min<uint64_t>(left, chunk.size()));
      file_.read(reinterpret_cast<char*>(chunk.data()), n);
      if (file_.gcount() != n) Fail("it is truncated inside '" + entry.name + "'");
      crc = crc32.Update(crc, chunk.data(), static_cast<size_t>(n));
      left -= static_cast<uint64_t>(n);
    }
    if (crc != entry.crc) Fail("entry '" + entry.name + "' does not match its CRC-32");
  }

 private:
  std::string path_;
  std::ifstream file_;
  uint64_t size_ = 0;
};

}  // namespace

std::string FindStorageRecord(const std::string& path, const uint8_t* bytes, uint64_t length) {
  try {
    ArchiveReader reader(path);
    for (const Entry& entry : reader.CentralDirectory()) {
      if (entry.method != 0 || entry.compressedSize != length) continue;
      if (entry.name.find("/data/") == std::string::npos && entry.name.find("/constants/") == std::string::npos) continue;
      std::vector<uint8_t> stored = reader.Read(reader.DataOffset(entry), length);
      if (length == 0 || std::memcmp(stored.data(), bytes, length) == 0) return entry.name;
    }
  } catch (const TypedError&) {
    // an archive this damaged was refused before its tensors were looked at
  }
  return "";
}

void VerifyArchive(const std::string& path) {
  static const Crc32 crc32;
  ArchiveReader reader(path);
  for (const Entry& entry : reader.CentralDirectory()) reader.VerifyEntry(entry, crc32);
}

}  // namespace easyroutine
