#include "core/id_dictionary.h"

namespace mercato::core {
namespace {

std::optional<uint32_t> FindIn(const std::vector<std::shared_ptr<const internal::IdMap>>& levels,
                               std::string_view id) {
  for (const auto& level : levels) {
    auto it = level->find(id);
    if (it != level->end()) return it->second;
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint32_t> IdDictionaryView::Find(std::string_view id) const {
  return FindIn(levels_, id);
}

IdDictionary::IdDictionary()
    : chunks_(std::make_shared<std::vector<std::shared_ptr<std::string[]>>>()) {}

std::optional<uint32_t> IdDictionary::Find(std::string_view id) const {
  auto it = pending_.find(id);
  if (it != pending_.end()) return it->second;
  return FindIn(levels_, id);
}

uint32_t IdDictionary::FindOrAdd(std::string_view id) {
  if (auto found = Find(id)) return *found;
  const uint32_t index = static_cast<uint32_t>(size_);
  if (index % internal::kIdChunk == 0) {
    auto next = std::make_shared<std::vector<std::shared_ptr<std::string[]>>>(*chunks_);
    next->push_back(std::shared_ptr<std::string[]>(new std::string[internal::kIdChunk]));
    chunks_ = std::move(next);
  }
  std::string& slot = (*chunks_)[index / internal::kIdChunk][index % internal::kIdChunk];
  slot.assign(id.data(), id.size());
  // The key views the chunk's string, which never moves.
  pending_.emplace(std::string_view(slot), index);
  ++size_;
  return index;
}

IdDictionaryView IdDictionary::Freeze() {
  if (!pending_.empty()) {
    auto carry = std::make_shared<internal::IdMap>(std::move(pending_));
    pending_ = internal::IdMap();
    // Merge while the newest level is at least half the size of the one
    // below it: sizes then fall geometrically and there are O(log n) levels.
    while (!levels_.empty() && carry->size() * 2 >= levels_.back()->size()) {
      auto merged = std::make_shared<internal::IdMap>(*levels_.back());
      merged->insert(carry->begin(), carry->end());
      carry = std::move(merged);
      levels_.pop_back();
    }
    levels_.push_back(std::move(carry));
  }
  IdDictionaryView view;
  view.chunks_ = chunks_;
  view.levels_ = levels_;
  view.size_ = size_;
  return view;
}

}  // namespace mercato::core
