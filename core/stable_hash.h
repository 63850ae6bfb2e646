// Hashes that are the same in every process, on every machine and in every
// build: what a model stores, sends through the log or decides by must not
// depend on the process (absl::Hash is seeded per process, so a replay or a
// replica would hash differently). 64-bit FNV-1a over the bytes, each value
// length-prefixed, then the splitmix64 finaliser to spread the bits.
#ifndef MERCATO_CORE_STABLE_HASH_H_
#define MERCATO_CORE_STABLE_HASH_H_

#include <cstdint>
#include <string_view>
#include <type_traits>

namespace mercato::core {

class StableHasher {
 public:
  StableHasher& Add(std::string_view s) {
    AddWord(s.size());
    for (unsigned char c : s) Byte(c);
    return *this;
  }
  template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
  StableHasher& Add(T v) {
    AddWord(static_cast<uint64_t>(v));
    return *this;
  }
  uint64_t value() const {
    uint64_t x = h_;  // splitmix64's finaliser
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }

 private:
  void Byte(unsigned char c) { h_ = (h_ ^ c) * 0x100000001b3ULL; }
  void AddWord(uint64_t v) {
    for (int i = 0; i < 8; ++i) Byte(static_cast<unsigned char>(v >> (8 * i)));
  }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

// The stable hash of `values` (strings and integers) in order.
template <class... T>
uint64_t StableHash(const T&... values) {
  StableHasher h;
  (h.Add(values), ...);
  return h.value();
}

}  // namespace mercato::core

#endif  // MERCATO_CORE_STABLE_HASH_H_
