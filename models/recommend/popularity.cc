#include "models/recommend/popularity.h"

#include <algorithm>
#include <cmath>

namespace mercato::core {
namespace {

constexpr int kRowsPerBlock = 256;
// Anchored scores are rescaled before their exponent reaches this.
constexpr double kMaxExponent = 400;
constexpr double kMsPerDay = 24.0 * 3600 * 1000;

// Moves `item` to `score` in `list` (inserting it when it now belongs).
void Rerank(RankedItems& list, uint32_t item, double score) {
  auto it = std::find_if(list.begin(), list.end(), [&](const auto& p) { return p.second == item; });
  if (it != list.end()) list.erase(it);
  auto pos = std::find_if(list.begin(), list.end(),
                          [&](const auto& p) { return Better(score, item, p.first, p.second); });
  if (pos == list.end() && list.size() >= kTopPopular) return;
  list.insert(pos, {score, item});
  if (list.size() > kTopPopular) list.pop_back();
}

void RemoveRanked(RankedItems& list, uint32_t item) {
  std::erase_if(list, [&](const auto& p) { return p.second == item; });
}

}  // namespace

double PopularityView::Scale(int64_t now_ms) const {
  return std::exp2(-(static_cast<double>(now_ms) - anchor_ms) / (half_life_days * kMsPerDay));
}

Popularity::Popularity(double half_life_days)
    : half_life_days_(half_life_days),
      scores_(1, kRowsPerBlock),
      overall_(std::make_shared<const RankedItems>()),
      by_category_(1, kRowsPerBlock) {}

void Popularity::Resize(size_t items, size_t categories) {
  scores_.Resize(items);
  by_category_.Resize(categories);
}

void Popularity::Add(uint32_t item, double weight, int64_t t_ms, const ItemInfo& info) {
  const double half_life_ms = half_life_days_ * kMsPerDay;
  if (anchor_ms_ == 0) anchor_ms_ = static_cast<double>(t_ms);
  double exponent = (static_cast<double>(t_ms) - anchor_ms_) / half_life_ms;
  if (exponent > kMaxExponent) {
    // Move the anchor to now: every score shrinks by the same factor.
    const double shrink = std::exp2(-exponent);
    for (uint32_t i = 0; i < scores_.rows(); ++i) {
      if (*scores_.Row(i) > 0) *scores_.MutableRow(i) *= shrink;
    }
    const auto rescale = [&](RankedItems& list) {
      for (auto& p : list) p.first *= shrink;
    };
    rescale(Own(overall_));
    for (uint32_t c = 0; c < by_category_.rows(); ++c) {
      if (*by_category_.Row(c)) rescale(Own(*by_category_.MutableRow(c)));
    }
    anchor_ms_ = static_cast<double>(t_ms);
    exponent = 0;
  }
  double& score = *scores_.MutableRow(item);
  score += weight * std::exp2(exponent);
  Rerank(Own(overall_), item, score);
  for (uint32_t c : info.path) {
    if (c != ItemInfo::kNoCategory) Rerank(Own(*by_category_.MutableRow(c)), item, score);
  }
}

void Popularity::Move(uint32_t item, const ItemInfo& from, const ItemInfo& to) {
  const double score = *scores_.Row(item);
  if (from.path == to.path || score <= 0) return;
  for (uint32_t c : from.path) {
    if (c != ItemInfo::kNoCategory) RemoveRanked(Own(*by_category_.MutableRow(c)), item);
  }
  for (uint32_t c : to.path) {
    if (c != ItemInfo::kNoCategory) Rerank(Own(*by_category_.MutableRow(c)), item, score);
  }
}

PopularityView Popularity::Freeze() const {
  return {scores_.Freeze(), overall_, by_category_.Freeze(), anchor_ms_, half_life_days_};
}

void Popularity::SetOverall(RankedItems list) {
  overall_ = std::make_shared<const RankedItems>(std::move(list));
}

void Popularity::SetCategory(uint32_t c, RankedItems list) {
  if (!list.empty()) *by_category_.MutableRow(c) = std::make_shared<const RankedItems>(std::move(list));
}

}  // namespace mercato::core
