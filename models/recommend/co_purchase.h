// Bought-together association rules: for each pair of items bought in the
// same order, the number of such orders (support), and per item the orders
// containing it, so that confidence = support / orders with the item and
// lift = confidence / share of orders with the other. Lines of one order
// may arrive as separate events: the last kOpenOrders orders stay open for
// more lines. A purchase without an order id is an order of one line.
//
// CoPurchase is owned by the learner thread and not thread-safe;
// CoPurchaseView is immutable and shares unchanged blocks with the model.
#ifndef MERCATO_MODELS_RECOMMEND_CO_PURCHASE_H_
#define MERCATO_MODELS_RECOMMEND_CO_PURCHASE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

// Orders whose lines may still arrive.
inline constexpr size_t kOpenOrders = 1024;

// Items bought in the same orders as one item, with counts, sorted by item.
using CoCounts = std::vector<std::pair<uint32_t, uint32_t>>;
// Open orders and their items, oldest first.
using OpenOrders = std::deque<std::pair<std::string, std::vector<uint32_t>>>;

// One rule `item` => `other`.
struct CoPurchaseRule {
  uint32_t other = 0;
  uint64_t support = 0;
  double confidence = 0, lift = 0;
};

struct CoPurchaseView {
  RowBlockView<std::shared_ptr<const CoCounts>> co_counts;
  RowBlockView<uint32_t> orders_with;
  uint64_t orders = 0;
  std::shared_ptr<const OpenOrders> open_orders;

  // The rules from `item` with at least `min_support` orders whose other
  // item `keep` accepts, by lift, then support, then item; at most `count`.
  std::vector<CoPurchaseRule> Rules(uint32_t item, size_t count, uint32_t min_support,
                                    const std::function<bool(uint32_t)>& keep) const;
};

class CoPurchase {
 public:
  CoPurchase();

  void Resize(size_t items);
  // A purchase of `item` in order `order_id` (empty: an order of its own).
  void Add(const std::string& order_id, uint32_t item);
  // Shares the open orders with the last view when they did not change.
  CoPurchaseView Freeze();

  // For the checkpoint codec.
  const CoCounts* counts(uint32_t item) const { return co_counts_.Row(item)->get(); }
  void SetCounts(uint32_t item, CoCounts counts);
  uint32_t orders_with(uint32_t item) const { return *orders_with_.Row(item); }
  void SetOrdersWith(uint32_t item, uint32_t n) { *orders_with_.MutableRow(item) = n; }
  uint64_t orders() const { return orders_; }
  void SetOrders(uint64_t orders) { orders_ = orders; }
  const OpenOrders& open_orders() const { return open_orders_; }
  void AddOpenOrder(std::string id, std::vector<uint32_t> items);

 private:
  RowBlockMatrix<std::shared_ptr<const CoCounts>> co_counts_;
  RowBlockMatrix<uint32_t> orders_with_;
  uint64_t orders_ = 0;
  OpenOrders open_orders_;
  // Order id -> its position counted from the first order ever opened.
  absl::flat_hash_map<std::string, size_t> open_order_index_;
  uint64_t open_orders_dropped_ = 0;
  std::shared_ptr<const OpenOrders> published_orders_;
  bool orders_changed_ = true;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_CO_PURCHASE_H_
