#include "models/recommend/co_purchase.h"

#include <algorithm>

#include "models/recommend/ranked_items.h"

namespace mercato::core {
namespace {

constexpr int kRowsPerBlock = 256;

void Increment(std::shared_ptr<const CoCounts>& slot, uint32_t other) {
  CoCounts& counts = Own(slot);
  auto it = std::lower_bound(counts.begin(), counts.end(), other,
                             [](const auto& p, uint32_t o) { return p.first < o; });
  if (it == counts.end() || it->first != other) it = counts.insert(it, {other, 0});
  ++it->second;
}

}  // namespace

std::vector<CoPurchaseRule> CoPurchaseView::Rules(
    uint32_t item, size_t count, uint32_t min_support,
    const std::function<bool(uint32_t)>& keep) const {
  std::vector<CoPurchaseRule> out;
  const std::shared_ptr<const CoCounts>& counts = *co_counts.Row(item);
  if (!counts || orders == 0) return out;
  const double with_item = *orders_with.Row(item);
  for (const auto& [other, support] : *counts) {
    if (support < min_support || !keep(other)) continue;
    CoPurchaseRule r;
    r.other = other;
    r.support = support;
    r.confidence = support / with_item;
    r.lift = r.confidence / (*orders_with.Row(other) / static_cast<double>(orders));
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const CoPurchaseRule& x, const CoPurchaseRule& y) {
    if (x.lift != y.lift) return x.lift > y.lift;
    if (x.support != y.support) return x.support > y.support;
    return x.other < y.other;
  });
  if (out.size() > count) out.resize(count);
  return out;
}

CoPurchase::CoPurchase() : co_counts_(1, kRowsPerBlock), orders_with_(1, kRowsPerBlock) {}

void CoPurchase::Resize(size_t items) {
  co_counts_.Resize(items);
  orders_with_.Resize(items);
}

void CoPurchase::Add(const std::string& order_id, uint32_t item) {
  orders_changed_ = true;
  if (order_id.empty()) {
    ++orders_;
    ++*orders_with_.MutableRow(item);
    return;
  }
  auto [it, added] =
      open_order_index_.try_emplace(order_id, open_orders_dropped_ + open_orders_.size());
  if (added) {
    ++orders_;
    open_orders_.push_back({order_id, {}});
    if (open_orders_.size() > kOpenOrders) {
      open_order_index_.erase(open_orders_.front().first);
      open_orders_.pop_front();
      ++open_orders_dropped_;
    }
  }
  std::vector<uint32_t>& items = open_orders_[it->second - open_orders_dropped_].second;
  if (std::find(items.begin(), items.end(), item) != items.end()) return;
  for (uint32_t other : items) {
    Increment(*co_counts_.MutableRow(item), other);
    Increment(*co_counts_.MutableRow(other), item);
  }
  items.push_back(item);
  ++*orders_with_.MutableRow(item);
}

CoPurchaseView CoPurchase::Freeze() {
  if (orders_changed_ || !published_orders_) {
    published_orders_ = std::make_shared<const OpenOrders>(open_orders_);
    orders_changed_ = false;
  }
  return {co_counts_.Freeze(), orders_with_.Freeze(), orders_, published_orders_};
}

void CoPurchase::SetCounts(uint32_t item, CoCounts counts) {
  *co_counts_.MutableRow(item) = std::make_shared<const CoCounts>(std::move(counts));
}

void CoPurchase::AddOpenOrder(std::string id, std::vector<uint32_t> items) {
  open_order_index_[id] = open_orders_dropped_ + open_orders_.size();
  open_orders_.push_back({std::move(id), std::move(items)});
  orders_changed_ = true;
}

}  // namespace mercato::core
