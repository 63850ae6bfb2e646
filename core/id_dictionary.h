// Versioned dictionary from external string ids (users, items, categories) to
// dense row numbers 0, 1, 2, ... in order of first appearance. Ids are never
// removed, so a row number stays valid for the life of the model.
//
// The learner owns an IdDictionary; Freeze() returns an immutable
// IdDictionaryView for readers. Names live in fixed-size chunks that are never
// moved, and the lookup maps are immutable levels whose sizes fall
// geometrically (small ones are merged into larger ones as they fill), so a
// publication copies only the small newest level and a lookup probes
// O(log n) maps.
//
// Thread-safety: IdDictionary is single-threaded; IdDictionaryView is
// immutable and safe from any thread.
#ifndef MERCATO_CORE_ID_DICTIONARY_H_
#define MERCATO_CORE_ID_DICTIONARY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace mercato::core {

namespace internal {
using IdMap = absl::flat_hash_map<std::string_view, uint32_t>;
inline constexpr size_t kIdChunk = 4096;
using IdChunk = std::unique_ptr<std::string[]>;
}  // namespace internal

class IdDictionaryView {
 public:
  size_t size() const { return size_; }
  std::optional<uint32_t> Find(std::string_view id) const;
  // REQUIRES: index < size().
  const std::string& Name(uint32_t index) const {
    return (*chunks_)[index / internal::kIdChunk][index % internal::kIdChunk];
  }

 private:
  friend class IdDictionary;
  std::shared_ptr<const std::vector<std::shared_ptr<std::string[]>>> chunks_;
  std::vector<std::shared_ptr<const internal::IdMap>> levels_;
  size_t size_ = 0;
};

class IdDictionary {
 public:
  IdDictionary();
  size_t size() const { return size_; }
  std::optional<uint32_t> Find(std::string_view id) const;
  // Returns the index of `id`, adding it at the end when new.
  uint32_t FindOrAdd(std::string_view id);
  const std::string& Name(uint32_t index) const {
    return (*chunks_)[index / internal::kIdChunk][index % internal::kIdChunk];
  }
  IdDictionaryView Freeze();

 private:
  // Chunk pointers; the vector is replaced (not mutated) when a chunk is added
  // so views keep a consistent list.
  std::shared_ptr<std::vector<std::shared_ptr<std::string[]>>> chunks_;
  std::vector<std::shared_ptr<const internal::IdMap>> levels_;
  internal::IdMap pending_;
  size_t size_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_ID_DICTIONARY_H_
