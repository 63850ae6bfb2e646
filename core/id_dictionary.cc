#include "core/id_dictionary.h"

#include <algorithm>

#include "absl/hash/hash.h"

namespace mercato::core {
namespace internal {
namespace {

constexpr size_t kInitialSlots = 1024;

uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }

}  // namespace

IdTable::IdTable(size_t capacity)
    : slots(new std::atomic<uint64_t>[capacity]), mask(capacity - 1) {
  for (size_t i = 0; i < capacity; ++i) slots[i].store(0, std::memory_order_relaxed);
}

std::optional<uint32_t> FindId(const IdTable& table, const IdChunks& chunks, size_t size,
                               std::string_view id) {
  const uint64_t hash = absl::HashOf(id);
  // An id added before this reader's rows were frozen sits before the first
  // empty slot of its probe sequence, since slots are never emptied.
  for (size_t pos = hash & table.mask;; pos = (pos + 1) & table.mask) {
    const uint64_t slot = table.slots[pos].load(std::memory_order_acquire);
    if (slot == 0) return std::nullopt;
    const uint32_t row = static_cast<uint32_t>(slot) - 1;
    if (slot >> 32 == Tag(hash) && row < size && chunks[row / kIdChunk][row % kIdChunk] == id) {
      return row;
    }
  }
}

}  // namespace internal

IdDictionary::IdDictionary()
    : chunks_(std::make_shared<internal::IdChunks>()),
      table_(std::make_shared<internal::IdTable>(internal::kInitialSlots)) {}

IdDictionary::IdDictionary(const IdDictionary& other)
    : chunks_(std::make_shared<internal::IdChunks>(*other.chunks_)),
      table_(std::make_shared<internal::IdTable>(other.table_->mask + 1)),
      size_(other.size_) {
  for (size_t i = 0; i <= table_->mask; ++i) {
    table_->slots[i].store(other.table_->slots[i].load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
  }
  if (size_ % internal::kIdChunk != 0) {
    auto& last = chunks_->back();
    auto mine = std::shared_ptr<std::string[]>(new std::string[internal::kIdChunk]);
    std::copy(last.get(), last.get() + size_ % internal::kIdChunk, mine.get());
    last = std::move(mine);
  }
}

IdDictionary& IdDictionary::operator=(const IdDictionary& other) {
  if (this != &other) *this = IdDictionary(other);
  return *this;
}

void IdDictionary::Insert(internal::IdTable& table, uint64_t hash, uint32_t index) {
  size_t pos = hash & table.mask;
  while (table.slots[pos].load(std::memory_order_relaxed) != 0) pos = (pos + 1) & table.mask;
  table.slots[pos].store(uint64_t{internal::Tag(hash)} << 32 | (index + 1),
                         std::memory_order_release);
}

uint32_t IdDictionary::FindOrAdd(std::string_view id) {
  if (auto found = Find(id)) return *found;
  const uint32_t index = static_cast<uint32_t>(size_);
  if (index % internal::kIdChunk == 0) {
    auto next = std::make_shared<internal::IdChunks>(*chunks_);
    next->push_back(std::shared_ptr<std::string[]>(new std::string[internal::kIdChunk]));
    chunks_ = std::move(next);
  }
  (*chunks_)[index / internal::kIdChunk][index % internal::kIdChunk].assign(id.data(), id.size());
  ++size_;
  // At most half full: probe sequences stay short.
  if (2 * size_ > table_->mask + 1) {
    auto bigger = std::make_shared<internal::IdTable>(2 * (table_->mask + 1));
    for (uint32_t i = 0; i < index; ++i) Insert(*bigger, absl::HashOf(std::string_view(Name(i))), i);
    table_ = std::move(bigger);
  }
  Insert(*table_, absl::HashOf(id), index);
  return index;
}

void IdDictionary::Rename(uint32_t index, std::string_view id) {
  // The chunk is copied, not changed, since views share it; the table is
  // built again, so that the old name's slot goes.
  auto chunks = std::make_shared<internal::IdChunks>(*chunks_);
  std::shared_ptr<std::string[]>& chunk = (*chunks)[index / internal::kIdChunk];
  auto copy = std::shared_ptr<std::string[]>(new std::string[internal::kIdChunk]);
  std::copy(chunk.get(), chunk.get() + internal::kIdChunk, copy.get());
  copy[index % internal::kIdChunk].assign(id.data(), id.size());
  chunk = std::move(copy);
  chunks_ = std::move(chunks);
  auto table = std::make_shared<internal::IdTable>(table_->mask + 1);
  for (uint32_t i = 0; i < size_; ++i) Insert(*table, absl::HashOf(std::string_view(Name(i))), i);
  table_ = std::move(table);
}

std::optional<uint32_t> RenameErased(IdDictionary& dictionary, std::string_view name,
                                     std::string_view placeholder) {
  if (name != placeholder) {
    if (const std::optional<uint32_t> row = dictionary.Find(name)) {
      dictionary.Rename(*row, placeholder);
      return row;
    }
  }
  return dictionary.Find(placeholder);
}

IdDictionaryView IdDictionary::Freeze() const {
  IdDictionaryView view;
  view.chunks_ = chunks_;
  view.table_ = table_;
  view.size_ = size_;
  return view;
}

}  // namespace mercato::core
