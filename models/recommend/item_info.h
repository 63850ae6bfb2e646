// What the catalogue says of an item, per item row of the recommendation
// model. Plain data.
#ifndef MERCATO_MODELS_RECOMMEND_ITEM_INFO_H_
#define MERCATO_MODELS_RECOMMEND_ITEM_INFO_H_

#include <array>
#include <cstdint>

namespace mercato::core {

// Catalogue facts per item row.
struct ItemInfo {
  float price = 0;  // 0 = unknown
  bool in_stock = true;
  bool deleted = false;  // by Catalog.DeleteItem, until upserted again
  // Category ids of the item's path, root first; kNoCategory past its end.
  static constexpr uint32_t kNoCategory = ~0u;
  static constexpr int kMaxDepth = 8;
  std::array<uint32_t, kMaxDepth> path = [] {
    std::array<uint32_t, kMaxDepth> p;
    p.fill(kNoCategory);
    return p;
  }();
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_ITEM_INFO_H_
