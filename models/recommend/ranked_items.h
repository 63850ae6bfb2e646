// Ranked item lists (popularity) and the copy-on-write slots that hold
// them, shared by the recommendation model's parts. Not thread-safe to
// modify; a list a view holds is never modified (Own copies it first).
#ifndef MERCATO_MODELS_RECOMMEND_RANKED_ITEMS_H_
#define MERCATO_MODELS_RECOMMEND_RANKED_ITEMS_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace mercato::core {

// Items ranked by score (best first), with their scores.
using RankedItems = std::vector<std::pair<double, uint32_t>>;

// Ranked-list order: higher score first, then lower item.
inline bool Better(double sa, uint32_t ia, double sb, uint32_t ib) {
  return sa > sb || (sa == sb && ia < ib);
}

// Copy-on-write access to a slot: copied when a view shares it. Every value
// is created non-const here, so writing through the sole owner is safe.
template <class T>
T& Own(std::shared_ptr<const T>& slot) {
  if (!slot) {
    slot = std::make_shared<T>();
  } else if (slot.use_count() > 1) {
    slot = std::make_shared<T>(*slot);
  }
  return const_cast<T&>(*slot);
}

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_RANKED_ITEMS_H_
