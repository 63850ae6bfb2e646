// Versioned dictionary from external string ids (users, items, categories,
// orders) to dense row numbers 0, 1, 2, ... in order of first appearance. Ids
// are never removed, so a row number stays valid for the life of the model;
// an erasure renames one (Rename).
//
// The learner owns an IdDictionary; Freeze() returns an immutable
// IdDictionaryView for readers in O(1). Names live in fixed-size chunks that
// never move; the lookup table is one open-addressing table of atomic slots
// (a hash tag and the row number) that the writer fills while readers probe
// it. A view ignores rows added after it was frozen, so it answers as of its
// freeze. When the table fills, the writer builds one twice the size and
// views already handed out keep the old one.
//
// Thread-safety: IdDictionary is single-threaded; IdDictionaryView is
// immutable and safe from any thread, also while the IdDictionary adds ids.
#ifndef MERCATO_CORE_ID_DICTIONARY_H_
#define MERCATO_CORE_ID_DICTIONARY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::core {

namespace internal {
inline constexpr size_t kIdChunk = 4096;
using IdChunks = std::vector<std::shared_ptr<std::string[]>>;

// Slots are 0 (empty) or (upper 32 bits of the id's hash) << 32 | (row + 1).
struct IdTable {
  explicit IdTable(size_t capacity);  // REQUIRES: a power of two
  std::unique_ptr<std::atomic<uint64_t>[]> slots;
  size_t mask;
};

// The row of `id` among the first `size` rows, or nullopt.
std::optional<uint32_t> FindId(const IdTable& table, const IdChunks& chunks, size_t size,
                               std::string_view id);
}  // namespace internal

class IdDictionaryView {
 public:
  size_t size() const { return size_; }
  std::optional<uint32_t> Find(std::string_view id) const {
    return table_ ? internal::FindId(*table_, *chunks_, size_, id) : std::nullopt;
  }
  // REQUIRES: index < size().
  const std::string& Name(uint32_t index) const {
    return (*chunks_)[index / internal::kIdChunk][index % internal::kIdChunk];
  }

 private:
  friend class IdDictionary;
  std::shared_ptr<const internal::IdChunks> chunks_;
  std::shared_ptr<const internal::IdTable> table_;
  size_t size_ = 0;
};

class IdDictionary {
 public:
  IdDictionary();
  // A copy is an independent writer: it gets its own table and its own copy
  // of the partly filled chunk, and shares only the full chunks.
  IdDictionary(const IdDictionary& other);
  IdDictionary& operator=(const IdDictionary& other);
  IdDictionary(IdDictionary&&) = default;
  IdDictionary& operator=(IdDictionary&&) = default;
  size_t size() const { return size_; }
  std::optional<uint32_t> Find(std::string_view id) const {
    return internal::FindId(*table_, *chunks_, size_, id);
  }
  // Returns the index of `id`, adding it at the end when new.
  uint32_t FindOrAdd(std::string_view id);
  // Row `index` is called `id` from now on; its old name is unknown. Views
  // frozen before keep the old name. O(size()).
  // REQUIRES: index < size(), `id` not present.
  void Rename(uint32_t index, std::string_view id);
  const std::string& Name(uint32_t index) const {
    return (*chunks_)[index / internal::kIdChunk][index % internal::kIdChunk];
  }
  IdDictionaryView Freeze() const;

 private:
  // Puts row `index` (whose name is stored) into `table`.
  static void Insert(internal::IdTable& table, uint64_t hash, uint32_t index);
  // Chunk pointers; the vector is replaced (not mutated) when a chunk is added
  // so views keep a consistent list.
  std::shared_ptr<internal::IdChunks> chunks_;
  std::shared_ptr<internal::IdTable> table_;
  size_t size_ = 0;
};

// An erasure's rename (core::ErasedName gives `placeholder`): the row of
// `name`, renamed to `placeholder`, or the row already called
// `placeholder` (a log whose erasure completed names only the placeholder);
// nullopt when neither is present.
std::optional<uint32_t> RenameErased(IdDictionary& dictionary, std::string_view name,
                                     std::string_view placeholder);

}  // namespace mercato::core

#endif  // MERCATO_CORE_ID_DICTIONARY_H_
