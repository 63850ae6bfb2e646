// Little binary encoder/decoder for stored values and checkpoints. Every
// stored value starts with a format version byte written by its owner.
// Numbers are little-endian fixed width or LEB128 varints; strings are
// varint-length-prefixed. Not thread-safe; one instance per buffer.
#ifndef MERCATO_CORE_BYTES_H_
#define MERCATO_CORE_BYTES_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace mercato::core {

class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_->push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out_->push_back(static_cast<char>(v));
  }
  void Fixed64(uint64_t v) { Raw(&v, sizeof v); }
  void I64(int64_t v) { Fixed64(static_cast<uint64_t>(v)); }
  void F64(double v) { Raw(&v, sizeof v); }
  void F32(float v) { Raw(&v, sizeof v); }
  void Str(std::string_view s) {
    Varint(s.size());
    out_->append(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) { out_->append(static_cast<const char*>(p), n); }

 private:
  std::string* out_;
};

// Reads what ByteWriter wrote. A read past the end or a malformed varint sets
// a sticky error, returns zero values, and `status()` reports it.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  uint8_t U8() {
    uint8_t v = 0;
    Raw(&v, 1);
    return v;
  }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Fail();
      uint8_t b = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    return Fail();
  }
  uint64_t Fixed64() {
    uint64_t v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  int64_t I64() { return static_cast<int64_t>(Fixed64()); }
  double F64() {
    double v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  float F32() {
    float v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  std::string Str() {
    uint64_t n = Varint();
    if (n > in_.size() - pos_) {
      Fail();
      return {};
    }
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  void Raw(void* p, size_t n) {
    if (n > in_.size() - pos_) {
      Fail();
      std::memset(p, 0, n);
      return;
    }
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  bool done() const { return pos_ == in_.size(); }
  // Marks the input malformed (a value read was out of range).
  void Invalidate() { Fail(); }
  size_t remaining() const { return in_.size() - pos_; }
  // OK when every read so far was within bounds.
  absl::Status status() const {
    return ok_ ? absl::OkStatus() : absl::DataLossError("truncated or malformed encoding");
  }

 private:
  uint64_t Fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_BYTES_H_
