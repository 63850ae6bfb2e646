#include "models/recommend/recommend_model.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/bytes.h"
#include "core/learner.h"
#include "core/log.h"

namespace mercato::core {
namespace {

constexpr int kRowsPerBlock = 256;
// Checkpoint format: 1 (index and waiting events optional at the end, read
// when no event waited), 2 (the index always, nothing after it).
constexpr uint8_t kFormat = 2;
// Popularity lists keep this many items (the largest `count`).
constexpr size_t kTopPopular = 1000;
// Orders whose lines may still arrive.
constexpr size_t kOpenOrders = 1024;
// Anchored popularity is rescaled before its exponent reaches this.
constexpr double kMaxPopularityExponent = 400;
constexpr double kMsPerDay = 24.0 * 3600 * 1000;

// Ranked-list order: higher score first, then lower item.
bool Better(double sa, uint32_t ia, double sb, uint32_t ib) {
  return sa > sb || (sa == sb && ia < ib);
}

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

// Copy-on-write access to a list slot: copied when a view shares it. Every
// list is created non-const here, so writing through the sole owner is safe.
template <class T>
T& Own(std::shared_ptr<const T>& slot) {
  if (!slot) {
    slot = std::make_shared<T>();
  } else if (slot.use_count() > 1) {
    slot = std::make_shared<T>(*slot);
  }
  return const_cast<T&>(*slot);
}

void Increment(std::shared_ptr<const CoCounts>& slot, uint32_t other) {
  CoCounts& counts = Own(slot);
  auto it = std::lower_bound(counts.begin(), counts.end(), other,
                             [](const auto& p, uint32_t o) { return p.first < o; });
  if (it == counts.end() || it->first != other) it = counts.insert(it, {other, 0});
  ++it->second;
}

void EncodeRanked(ByteWriter& w, const RankedItems* list) {
  w.Varint(list ? list->size() : 0);
  if (!list) return;
  for (const auto& [score, item] : *list) {
    w.F64(score);
    w.Varint(item);
  }
}

RankedItems DecodeRanked(ByteReader& r, size_t items) {
  RankedItems list;
  const uint64_t n = r.Varint();
  for (uint64_t i = 0; i < n && r.status().ok(); ++i) {
    const double score = r.F64();
    const uint64_t item = r.Varint();
    if (item >= items) r.Invalidate();
    list.push_back({score, static_cast<uint32_t>(item)});
  }
  return list;
}

}  // namespace

// ---- serving ------------------------------------------------------------

// The per-request item predicate.
class RecommendView::Filter {
 public:
  Filter(const RecommendView& view, const ItemFilter& f, std::vector<uint32_t> categories)
      : view_(view), f_(f), categories_(std::move(categories)) {
    for (const std::string& id : f.exclude_item_ids) {
      if (auto row = view.items_.Find(id)) excluded_.insert(*row);
    }
  }
  void Exclude(uint32_t item) { excluded_.insert(item); }
  // Starts loading what Pass(item, ...) reads.
  void Prefetch(uint32_t item) const {
    if (item >= view_.info_.rows()) return;
    __builtin_prefetch(view_.support_.Row(item));
    __builtin_prefetch(view_.info_.Row(item));
  }
  // With `factors`: only items that have a factor row.
  bool Pass(uint32_t item, bool factors) const {
    if (item >= view_.info_.rows()) return false;
    if (factors && *view_.support_.Row(item) == 0) return false;
    if (excluded_.contains(item)) return false;
    const ItemInfo& info = *view_.info_.Row(item);
    if (info.deleted) return false;
    if (f_.in_stock_only && !info.in_stock) return false;
    if ((f_.min_price > 0 || f_.max_price > 0) && info.price <= 0) return false;
    if (f_.min_price > 0 && info.price < f_.min_price) return false;
    if (f_.max_price > 0 && info.price > f_.max_price) return false;
    if (!categories_.empty()) {
      for (uint32_t c : info.path) {
        if (std::find(categories_.begin(), categories_.end(), c) != categories_.end()) return true;
      }
      return false;
    }
    return true;
  }
  size_t excluded() const { return excluded_.size(); }

 private:
  const RecommendView& view_;
  const ItemFilter& f_;
  std::vector<uint32_t> categories_;
  absl::flat_hash_set<uint32_t> excluded_;
};

namespace {

// Keeps the best `count` (score, item) pairs.
class TopK {
 public:
  explicit TopK(size_t count) : count_(count) {}
  // Whether a score could enter (cheap pre-check before the filter).
  bool Admits(double score) const { return heap_.size() < count_ || score >= heap_.top().first; }
  void Push(double score, uint32_t item) {
    if (heap_.size() < count_) {
      heap_.push({score, item});
    } else if (Better(score, item, heap_.top().first, heap_.top().second)) {
      heap_.pop();
      heap_.push({score, item});
    }
  }
  size_t size() const { return heap_.size(); }
  // Best first.
  std::vector<std::pair<double, uint32_t>> Take() {
    std::vector<std::pair<double, uint32_t>> out(heap_.size());
    for (size_t i = out.size(); i-- > 0; heap_.pop()) out[i] = heap_.top();
    return out;
  }

 private:
  struct Worse {
    bool operator()(const std::pair<double, uint32_t>& a,
                    const std::pair<double, uint32_t>& b) const {
      return Better(a.first, a.second, b.first, b.second);
    }
  };
  size_t count_;
  std::priority_queue<std::pair<double, uint32_t>, std::vector<std::pair<double, uint32_t>>,
                      Worse>
      heap_;
};

}  // namespace

std::vector<RecommendView::Scored> RecommendView::Rank(const Eigen::VectorXf& query,
                                                       size_t count, const Filter& filter,
                                                       const std::vector<uint32_t>* candidates,
                                                       bool exact) const {
  const int k = dim();
  const RowBlockView<float>& rows = factors_.items;
  TopK top(count);
  const auto consider = [&](uint32_t item, double score) {
    if (top.Admits(score) && filter.Pass(item, true)) top.Push(score, item);
  };
  if (candidates) {
    for (uint32_t item : *candidates) {
      if (item < rows.rows()) {
        consider(item, Eigen::Map<const Eigen::VectorXf>(rows.Row(item), k).dot(query));
      }
    }
  } else if (!exact && index_) {
    const size_t want = std::min(rows.rows(), count + filter.excluded() + count);
    std::vector<uint32_t> found = index_->Search(query.data(), want);
    std::erase_if(found, [&](uint32_t item) { return item >= rows.rows(); });
    // Fetch every candidate's row at once: their cache misses overlap.
    for (uint32_t item : found) {
      const char* row = reinterpret_cast<const char*>(rows.Row(item));
      for (size_t b = 0; b < k * sizeof(float); b += 64) __builtin_prefetch(row + b);
      filter.Prefetch(item);
    }
    for (uint32_t item : found) {
      consider(item, Eigen::Map<const Eigen::VectorXf>(rows.Row(item), k).dot(query));
    }
    // A filter stricter than the candidates allow: the exact scan decides.
    if (top.size() < count) return Rank(query, count, filter, nullptr, true);
  } else {
    const int per_block = rows.rows_per_block();
    Eigen::VectorXf scores(per_block);
    for (size_t b = 0; b < rows.num_blocks(); ++b) {
      const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
          block(rows.BlockData(b), per_block, k);
      scores.noalias() = block * query;
      const size_t first = b * per_block;
      const size_t n = std::min<size_t>(per_block, rows.rows() - first);
      for (size_t r = 0; r < n; ++r) consider(static_cast<uint32_t>(first + r), scores[r]);
    }
  }
  std::vector<Scored> out;
  for (const auto& [score, item] : top.Take()) out.push_back({score, item});
  return out;
}

std::vector<RecommendView::Scored> RecommendView::Popular(const RankedItems& ranked,
                                                          size_t count, const Filter& filter,
                                                          bool scan_all) const {
  std::vector<Scored> out;
  for (const auto& [score, item] : ranked) {
    if (out.size() == count) break;
    if (filter.Pass(item, false)) out.push_back({score, item});
  }
  if (scan_all && out.size() < count && ranked.size() >= kTopPopular) {
    // The list is cut short: scan every item.
    TopK top(count);
    for (uint32_t item = 0; item < popularity_.rows(); ++item) {
      const double score = *popularity_.Row(item);
      if (score > 0 && top.Admits(score) && filter.Pass(item, false)) top.Push(score, item);
    }
    out.clear();
    for (const auto& [score, item] : top.Take()) out.push_back({score, item});
  }
  // Anchored scores to today's decayed popularity.
  const double scale =
      std::exp2(-(static_cast<double>(factors_.now_ms) - popularity_anchor_ms_) /
                (options_.popularity_half_life_days * kMsPerDay));
  for (Scored& s : out) s.score *= scale;
  return out;
}

void RecommendView::Observed(const History& history, Eigen::MatrixXd& x, Eigen::VectorXd& c,
                             std::vector<uint32_t>* items) const {
  GatherObserved(options_.ials, factors_.now_ms, history,
                 [&](const Interaction& in) -> const float* {
                   if (in.item >= factors_.items.rows() || *support_.Row(in.item) == 0) {
                     return nullptr;
                   }
                   if (items) items->push_back(in.item);
                   return factors_.items.Row(in.item);
                 },
                 x, c);
}

Eigen::VectorXf RecommendView::FoldIn(const History& history) const {
  Eigen::MatrixXd x;
  Eigen::VectorXd c;
  Observed(history, x, c, nullptr);
  Eigen::VectorXd v = Eigen::VectorXd::Zero(dim());
  // A session gets more CG steps than an event fold-in: it starts from zero.
  IalsOptions o = options_.ials;
  o.cg_steps = std::max(o.cg_steps, 8);
  SolveFactorRow(o, *factors_.gram_items, UnobservedWeight(o, factors_.items.rows()),
                 factors_.items.rows(), x, c, v);
  return v.cast<float>();
}

// Hu, Koren and Volinsky (2008), section 5: with A the user's system matrix,
// score(j) = sum_i c_i h_j' A^-1 h_i, so history item i contributes
// c_i h_j' A^-1 h_i. A is factorised once for all of `ranked`.
void RecommendView::Explain(const History& history, const std::vector<Scored>& ranked,
                            std::vector<Recommendation>& out) const {
  std::vector<uint32_t> used;
  Eigen::MatrixXd x;
  Eigen::VectorXd c;
  Observed(history, x, c, &used);
  if (used.empty()) return;
  const IalsOptions& o = options_.ials;
  const double a0 = UnobservedWeight(o, factors_.items.rows());
  Eigen::MatrixXd a = a0 * *factors_.gram_items;
  a.noalias() += x.transpose() * c.asDiagonal() * x;
  a.diagonal().array() += RowRegularization(o, used.size(), a0, factors_.items.rows());
  const Eigen::LDLT<Eigen::MatrixXd> system = a.ldlt();
  for (size_t r = 0; r < ranked.size() && r < out.size(); ++r) {
    const Eigen::VectorXd y = system.solve(
        Eigen::Map<const Eigen::VectorXf>(factors_.items.Row(ranked[r].item), dim()).cast<double>());
    const Eigen::VectorXd parts = c.cwiseProduct(x * y);
    const double total = parts.sum();
    std::vector<std::pair<double, uint32_t>> order;
    for (size_t i = 0; i < used.size(); ++i) order.push_back({parts[i], used[i]});
    std::sort(order.begin(), order.end(),
              [](const auto& p, const auto& q) { return Better(p.first, p.second, q.first, q.second); });
    for (const auto& [part, i] : order) {
      if (out[r].because.size() == static_cast<size_t>(options_.explanations) || part <= 0) break;
      out[r].because.push_back({items_.Name(i), total > 0 ? part / total : 0});
    }
  }
}

absl::StatusOr<std::vector<uint32_t>> RecommendView::CategoriesOf(const ItemFilter& filter) const {
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < filter.categories.size(); ++i) {
    std::optional<uint32_t> id = categories_.Find(filter.categories[i]);
    if (!id) {
      return absl::InvalidArgumentError(absl::StrCat("filter.categories[", i,
                                                     "]: unknown category '",
                                                     filter.categories[i], "'"));
    }
    ids.push_back(*id);
  }
  return ids;
}

absl::StatusOr<std::vector<Recommendation>> RecommendView::Recommend(
    const RecommendQuery& q) const {
  absl::StatusOr<std::vector<uint32_t>> categories = CategoriesOf(q.filter);
  if (!categories.ok()) return categories.status();
  Filter filter(*this, q.filter, *categories);

  // The user's history, plus the session's items as views now.
  History history;
  std::optional<uint32_t> user = users_.Find(q.user_id);
  if (user && *user < factors_.histories.rows()) {
    if (const auto& h = *factors_.histories.Row(*user)) history = *h;
  }
  const bool has_history = std::any_of(history.begin(), history.end(),
                                       [](const Interaction& in) { return in.confidence > 0; });
  for (const Interaction& in : history) {
    if ((q.filter.exclude_seen && (in.flags & kSeen)) ||
        (q.filter.exclude_purchased && (in.flags & kPurchased))) {
      filter.Exclude(in.item);
    }
  }
  bool has_context = false;
  for (const std::string& id : q.context_item_ids) {
    std::optional<uint32_t> item = items_.Find(id);
    if (!item) continue;
    has_context = true;
    if (q.filter.exclude_seen) filter.Exclude(*item);
    auto it = std::lower_bound(history.begin(), history.end(), *item,
                               [](const Interaction& a, uint32_t i) { return a.item < i; });
    if (it == history.end() || it->item != *item) it = history.insert(it, Interaction{*item});
    it->confidence = static_cast<float>(
        DecayedConfidence(options_.ials, it->confidence, it->last_ms, factors_.now_ms) +
        options_.weights[static_cast<int>(EventType::kView)]);
    it->last_ms = std::max(it->last_ms, factors_.now_ms);
  }
  std::vector<uint32_t> candidates;
  for (const std::string& id : q.candidate_item_ids) {
    if (auto item = items_.Find(id)) candidates.push_back(*item);
  }
  const std::vector<uint32_t>* only = q.candidate_item_ids.empty() ? nullptr : &candidates;

  std::vector<Recommendation> out;
  // Appends `ranked` (as far as `count` allows), explained from `explain`.
  const auto emit = [&](std::vector<Scored> ranked, RecommendSource source,
                        const History* explain) {
    ranked.resize(std::min(ranked.size(), q.count - out.size()));
    std::vector<Recommendation> added;
    for (const Scored& s : ranked) {
      filter.Exclude(s.item);
      added.push_back({items_.Name(s.item), s.score, source, {}});
    }
    if (explain && q.explain) Explain(*explain, ranked, added);
    for (Recommendation& r : added) out.push_back(std::move(r));
  };

  // Personal or session scores.
  Eigen::VectorXf vec;
  if (has_context) {
    vec = FoldIn(history);
  } else if (has_history) {
    vec = Eigen::Map<const Eigen::VectorXf>(factors_.users.Row(*user), dim());
  }
  if (vec.size() > 0 && !vec.isZero()) {
    emit(Rank(vec, q.count, filter, only, q.exact),
         has_history ? RecommendSource::kPersonal : RecommendSource::kSession, &history);
  }

  // Fallbacks: popularity in the requested categories, else in the category
  // the history and session visit most, then overall.
  const auto popular_among = [&](const RankedItems& ranked, bool scan_all) {
    if (!only) return Popular(ranked, q.count - out.size(), filter, scan_all);
    RankedItems subset;
    for (uint32_t item : candidates) subset.push_back({*popularity_.Row(item), item});
    std::sort(subset.begin(), subset.end(), [](const auto& a, const auto& b) {
      return Better(a.first, a.second, b.first, b.second);
    });
    return Popular(subset, q.count - out.size(), filter, false);
  };
  std::vector<uint32_t> fallback_categories = *categories;
  if (fallback_categories.empty() && out.size() < q.count) {
    absl::flat_hash_map<uint32_t, int> visits;
    uint32_t best = ItemInfo::kNoCategory;
    for (const Interaction& in : history) {
      const ItemInfo& info = *info_.Row(in.item);
      uint32_t leaf = ItemInfo::kNoCategory;
      for (uint32_t c : info.path) leaf = c == ItemInfo::kNoCategory ? leaf : c;
      if (leaf == ItemInfo::kNoCategory) continue;
      const int n = ++visits[leaf];
      if (best == ItemInfo::kNoCategory || n > visits[best] || (n == visits[best] && leaf < best)) {
        best = leaf;
      }
    }
    if (best != ItemInfo::kNoCategory) fallback_categories.push_back(best);
  }
  for (uint32_t c : fallback_categories) {
    if (out.size() < q.count && c < category_popular_.rows() && *category_popular_.Row(c)) {
      emit(popular_among(**category_popular_.Row(c), false), RecommendSource::kCategoryPopular,
           nullptr);
    }
  }
  if (out.size() < q.count) emit(popular_among(*popular_, true), RecommendSource::kPopular, nullptr);
  return out;
}

absl::StatusOr<std::vector<Recommendation>> RecommendView::SimilarItems(
    std::string_view item_id, size_t count, const ItemFilter& filter_spec) const {
  absl::StatusOr<std::vector<uint32_t>> categories = CategoriesOf(filter_spec);
  if (!categories.ok()) return categories.status();
  std::optional<uint32_t> item = items_.Find(item_id);
  if (!item || info_.Row(*item)->deleted) {
    return absl::NotFoundError(absl::StrCat("item_id: no item '", std::string(item_id), "'"));
  }
  Filter filter(*this, filter_spec, *categories);
  filter.Exclude(*item);
  std::vector<Recommendation> out;
  if (*item >= factors_.items.rows() || *support_.Row(*item) == 0) return out;
  const Eigen::Map<const Eigen::VectorXf> anchor(factors_.items.Row(*item), dim());
  const Eigen::VectorXf query = anchor.normalized();
  // Inner-product candidates (more than asked), re-ranked by cosine.
  const size_t wide = std::min(factors_.items.rows(), 4 * count + 16);
  std::vector<std::pair<double, uint32_t>> cosine;
  for (const Scored& s : Rank(query, wide, filter, nullptr, false)) {
    const float norm = Eigen::Map<const Eigen::VectorXf>(factors_.items.Row(s.item), dim()).norm();
    cosine.push_back({norm > 0 ? s.score / norm : 0, s.item});
  }
  std::sort(cosine.begin(), cosine.end(), [](const auto& a, const auto& b) {
    return Better(a.first, a.second, b.first, b.second);
  });
  for (const auto& [score, other] : cosine) {
    if (out.size() == count) break;
    out.push_back({items_.Name(other), score, RecommendSource::kSimilar, {}});
  }
  return out;
}

absl::StatusOr<std::vector<ItemAssociation>> RecommendView::BoughtTogether(
    std::string_view item_id, size_t count, uint32_t min_support) const {
  std::optional<uint32_t> item = items_.Find(item_id);
  if (!item || info_.Row(*item)->deleted) {
    return absl::NotFoundError(absl::StrCat("item_id: no item '", std::string(item_id), "'"));
  }
  if (min_support == 0) min_support = options_.min_support;
  std::vector<ItemAssociation> out;
  const std::shared_ptr<const CoCounts>& counts = *co_counts_.Row(*item);
  if (!counts || orders_ == 0) return out;
  const double with_item = *orders_with_.Row(*item);
  std::vector<std::pair<ItemAssociation, uint32_t>> all;
  for (const auto& [other, support] : *counts) {
    if (support < min_support || info_.Row(other)->deleted) continue;
    ItemAssociation a;
    a.item_id = items_.Name(other);
    a.support = support;
    a.confidence = support / with_item;
    a.lift = a.confidence / (*orders_with_.Row(other) / static_cast<double>(orders_));
    all.push_back({std::move(a), other});
  }
  std::sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
    if (x.first.lift != y.first.lift) return x.first.lift > y.first.lift;
    if (x.first.support != y.first.support) return x.first.support > y.first.support;
    return x.second < y.second;
  });
  for (auto& [a, other] : all) {
    if (out.size() == count) break;
    out.push_back(std::move(a));
  }
  return out;
}

const float* RecommendView::UserFactors(std::string_view user_id) const {
  std::optional<uint32_t> u = users_.Find(user_id);
  return u && *u < factors_.users.rows() ? factors_.users.Row(*u) : nullptr;
}

const float* RecommendView::ItemFactors(std::string_view item_id) const {
  std::optional<uint32_t> i = items_.Find(item_id);
  return i && *i < factors_.items.rows() ? factors_.items.Row(*i) : nullptr;
}

std::vector<uint32_t> RecommendView::TopItems(const float* query, size_t k, bool exact) const {
  if (!exact && !index_) return {};
  ItemFilter none;
  Filter filter(*this, none, {});
  std::vector<uint32_t> out;
  for (const Scored& s : Rank(Eigen::Map<const Eigen::VectorXf>(query, dim()), k, filter,
                              nullptr, exact)) {
    out.push_back(s.item);
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> RecommendView::Counts() const {
  return {{"users", users_.size()},
          {"items", items_.size()},
          {"categories", categories_.size()},
          {"orders", orders_},
          {"retrains", retrains_},
          {"hnsw_items", index_ ? index_->size() : 0},
};
}

std::string RecommendView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormat);
  for (const IdDictionaryView* d : {&users_, &items_, &categories_}) {
    w.Varint(d->size());
    for (uint32_t i = 0; i < d->size(); ++i) w.Str(d->Name(i));
  }
  (unserved_factors_ ? *unserved_factors_ : factors_).Encode(w);
  w.F64(popularity_anchor_ms_);
  for (uint32_t i = 0; i < items_.size(); ++i) {
    const ItemInfo& info = *info_.Row(i);
    w.F32(info.price);
    w.U8((info.in_stock ? 1 : 0) | (info.deleted ? 2 : 0));
    for (uint32_t c : info.path) w.Varint(c == ItemInfo::kNoCategory ? 0 : uint64_t{c} + 1);
    w.F64(*popularity_.Row(i));
    const std::shared_ptr<const CoCounts>& co = *co_counts_.Row(i);
    w.Varint(co ? co->size() : 0);
    if (co) {
      for (const auto& [other, n] : *co) {
        w.Varint(other);
        w.Varint(n);
      }
    }
    w.Varint(*orders_with_.Row(i));
  }
  EncodeRanked(w, popular_.get());
  for (uint32_t c = 0; c < categories_.size(); ++c) EncodeRanked(w, category_popular_.Row(c)->get());
  w.Varint(orders_);
  w.Varint(open_orders_->size());
  for (const auto& [id, items] : *open_orders_) {
    w.Str(id);
    w.Varint(items.size());
    for (uint32_t i : items) w.Varint(i);
  }
  w.Varint(interactions_since_retrain_);
  w.Varint(retrains_);
  w.Str(index_ ? index_->Encode() : std::string());
  return out;
}

// ---- learning -----------------------------------------------------------

RecommendModel::RecommendModel(RecommendOptions options)
    : options_(std::move(options)),
      factors_(options_.ials),
      info_(1, kRowsPerBlock),
      popularity_(1, kRowsPerBlock),
      support_(1, kRowsPerBlock),
      popular_(std::make_shared<const RankedItems>()),
      category_popular_(1, kRowsPerBlock),
      co_counts_(1, kRowsPerBlock),
      orders_with_(1, kRowsPerBlock) {}

RecommendModel::~RecommendModel() {
  if (pending_index_.valid()) pending_index_.wait();
}

bool RecommendModel::Uses(const Event& event) const {
  if (event.type == EventType::kItemUpdate || event.type == EventType::kUserDelete ||
      event.type == EventType::kItemDelete) {
    return true;
  }
  const int type = static_cast<int>(event.type);
  return type < kNumEventTypes && options_.weights[type] != 0 && !event.user_id.empty() &&
         !event.item_id.empty();
}

bool RecommendModel::Preview(const Event& event) {
  if (!Uses(event)) return false;
  if (!serving_) serving_ = factors_;
  if (event.type == EventType::kUserDelete) {
    if (const std::optional<uint32_t> user = users_.Find(event.user_id)) serving_->ForgetUser(*user);
    return true;
  }
  if (event.type == EventType::kItemDelete) return false;  // catalogue facts wait with the events
  const uint32_t item = items_.FindOrAdd(event.item_id);
  GrowItems();
  if (event.type == EventType::kItemUpdate) return false;
  const uint32_t user = users_.FindOrAdd(event.user_id);
  const auto [delta, flags] = Effect(event);
  serving_->Observe(user, item, delta, flags, event.timestamp_ms);
  return true;
}

std::pair<float, uint8_t> RecommendModel::Effect(const Event& event) const {
  const uint8_t flags = event.type == EventType::kPurchase ? (kSeen | kPurchased)
                        : event.type == EventType::kRefund ? 0
                                                           : kSeen;
  return {options_.weights[static_cast<int>(event.type)], flags};
}

bool RecommendModel::Apply(const Event& event) {
  position_ = event.sequence;
  if (!Uses(event)) return false;
  if (event.type == EventType::kItemUpdate) {
    ApplyItemUpdate(event);
  } else if (event.type == EventType::kItemDelete) {
    const std::optional<uint32_t> item = items_.Find(event.item_id);
    if (!item) return false;
    info_.MutableRow(*item)->deleted = true;
  } else if (event.type == EventType::kUserDelete) {
    const std::optional<uint32_t> user = users_.Find(event.user_id);
    if (!user) return false;
    factors_.ForgetUser(*user);
    if (fit_run_.running()) tail_.push_back({*user, 0, 0, 0, 0, true});
  } else {
    ApplyInteraction(event, items_.FindOrAdd(event.item_id));
  }
  return true;
}

void RecommendModel::GrowItems() {
  const size_t n = items_.size();
  info_.Resize(n);
  popularity_.Resize(n);
  support_.Resize(n);
  co_counts_.Resize(n);
  orders_with_.Resize(n);
}

void RecommendModel::ApplyItemUpdate(const Event& event) {
  const uint32_t item = items_.FindOrAdd(event.item_id);
  GrowItems();
  ItemInfo info;
  info.price = static_cast<float>(event.unit_price);
  info.in_stock = event.quantity > 0;
  std::vector<std::string> path = CategoryPath(event);
  size_t depth = 0;
  for (const std::string& name : path) {
    if (name.empty() || depth == info.path.size()) continue;
    info.path[depth++] = categories_.FindOrAdd(name);
  }
  category_popular_.Resize(categories_.size());
  ItemInfo& slot = *info_.MutableRow(item);
  const double score = *popularity_.Row(item);
  if (slot.path != info.path && score > 0) {
    for (uint32_t c : slot.path) {
      if (c != ItemInfo::kNoCategory) RemoveRanked(Own(*category_popular_.MutableRow(c)), item);
    }
    for (uint32_t c : info.path) {
      if (c != ItemInfo::kNoCategory) Rerank(Own(*category_popular_.MutableRow(c)), item, score);
    }
  }
  slot = info;
}

void RecommendModel::ApplyInteraction(const Event& event, uint32_t item) {
  const uint32_t user = users_.FindOrAdd(event.user_id);
  GrowItems();
  const auto [weight, flags] = Effect(event);
  factors_.Observe(user, item, weight, flags, event.timestamp_ms);
  if (fit_run_.running()) tail_.push_back({user, item, weight, flags, event.timestamp_ms, false});
  uint32_t& support = *support_.MutableRow(item);
  if (support == 0 && factors_.ItemSupport(item) > 0) ++items_with_factors_;
  support = factors_.ItemSupport(item);
  if (weight > 0) AddPopularity(item, weight, event.timestamp_ms);
  if (event.type == EventType::kPurchase) AddToOrder(event.order_id, item);
  ++interactions_since_retrain_;
  // A retrain due while the last one runs starts at the first interaction
  // after that one is adopted: both points fixed by the log.
  if (!fit_run_.running() && FitDue(options_.retrain_every, {interactions_since_retrain_, true})) {
    StartRetrain();
  }
}

void RecommendModel::AddPopularity(uint32_t item, double weight, int64_t t_ms) {
  const double half_life_ms = options_.popularity_half_life_days * kMsPerDay;
  if (popularity_anchor_ms_ == 0) popularity_anchor_ms_ = static_cast<double>(t_ms);
  double exponent = (static_cast<double>(t_ms) - popularity_anchor_ms_) / half_life_ms;
  if (exponent > kMaxPopularityExponent) {
    // Move the anchor to now: every score shrinks by the same factor.
    const double shrink = std::exp2(-exponent);
    for (uint32_t i = 0; i < popularity_.rows(); ++i) {
      if (*popularity_.Row(i) > 0) *popularity_.MutableRow(i) *= shrink;
    }
    const auto rescale = [&](RankedItems& list) {
      for (auto& p : list) p.first *= shrink;
    };
    rescale(Own(popular_));
    for (uint32_t c = 0; c < category_popular_.rows(); ++c) {
      if (*category_popular_.Row(c)) rescale(Own(*category_popular_.MutableRow(c)));
    }
    popularity_anchor_ms_ = static_cast<double>(t_ms);
    exponent = 0;
  }
  double& score = *popularity_.MutableRow(item);
  score += weight * std::exp2(exponent);
  Rerank(Own(popular_), item, score);
  for (uint32_t c : info_.Row(item)->path) {
    if (c != ItemInfo::kNoCategory) Rerank(Own(*category_popular_.MutableRow(c)), item, score);
  }
}

void RecommendModel::AddToOrder(const std::string& order_id, uint32_t item) {
  orders_changed_ = true;
  if (order_id.empty()) {
    ++orders_;
    ++*orders_with_.MutableRow(item);
    return;
  }
  auto [it, added] = open_order_index_.try_emplace(order_id, open_orders_dropped_ + open_orders_.size());
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

bool RecommendModel::WantsIndex() const {
  return options_.hnsw_min_items > 0 && items_with_factors_ >= options_.hnsw_min_items;
}

std::shared_ptr<HnswIndex> RecommendModel::BuildIndex(const IalsState& state,
                                                      const std::atomic<bool>& stop) const {
  auto index = std::make_shared<HnswIndex>(options_.ials.dim, options_.hnsw,
                                           state.num_items() + state.num_items() / 4);
  for (uint32_t i = 0; i < state.num_items(); ++i) {
    if (stop.load(std::memory_order_relaxed)) return nullptr;
    if (state.ItemSupport(i) > 0) index->Upsert(i, state.item_row(i));
  }
  return index;
}

void RecommendModel::StartRetrain() {
  interactions_since_retrain_ = 0;
  tail_.clear();
  const bool index = WantsIndex();
  fit_run_.Start(position_, options_.adopt_after_events, options_.background,
                 [this, state = factors_, index](const std::atomic<bool>& stop) mutable
                 -> std::optional<Trained> {
                   const absl::Time start = absl::Now();
                   if (!state.Train(options_.ials.epochs, &stop)) return std::nullopt;
                   std::shared_ptr<HnswIndex> built = index ? BuildIndex(state, stop) : nullptr;
                   if (index && !built) return std::nullopt;
                   const absl::Time end = absl::Now();
                   return Trained{std::move(state), std::move(built),
                                  {absl::ToUnixMillis(end), absl::ToDoubleSeconds(end - start)}};
                 });
}

void RecommendModel::AdoptRetrain(Trained trained) {
  for (const Observation& o : tail_) {
    if (o.forget) {
      trained.state.ForgetUser(o.user);
    } else {
      trained.state.Observe(o.user, o.item, o.delta, o.flags, o.t_ms);
    }
  }
  tail_.clear();
  factors_ = std::move(trained.state);
  if (trained.index) index_ = std::move(trained.index);
  ++retrains_;
  last_retrain_ = trained.run;
}

FitGate RecommendModel::Gate(uint64_t sequence) {
  const FitGate gate =
      fit_run_.Gate(sequence, [this](Trained trained) { AdoptRetrain(std::move(trained)); });
  if (gate == FitGate::kAdopted) serving_.reset();  // what was previewed is applied next
  return gate;
}

bool RecommendModel::Poll() {
  if (!pending_index_.valid() ||
      pending_index_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return false;
  }
  index_ = pending_index_.get();
  return true;
}

void RecommendModel::Retrain() {
  if (!fit_run_.running()) StartRetrain();
}

void RecommendModel::Abandon() {
  fit_run_.Abandon();
  abandoned_ = true;
}

void RecommendModel::RetrainNow() {
  const auto adopt = [this](Trained trained) { AdoptRetrain(std::move(trained)); };
  fit_run_.Finish(adopt);
  const bool background = options_.background;
  options_.background = false;
  StartRetrain();
  options_.background = background;
  fit_run_.Finish(adopt);
}

void RecommendModel::SyncIndex() {
  const std::vector<uint32_t> changed = factors_.TakeChangedItems();
  if (!index_) return;
  index_backlog_.insert(index_backlog_.end(), changed.begin(), changed.end());
  // Upserts would wait for the save; fold-in and publications must not.
  if (index_->saving()) return;
  for (uint32_t item : index_backlog_) {
    if (factors_.ItemSupport(item) > 0) index_->Upsert(item, factors_.item_row(item));
  }
  index_backlog_.clear();
}

std::shared_ptr<const ModelView> RecommendModel::Publish() {
  SyncIndex();
  auto view = std::make_shared<RecommendView>();
  view->options_ = options_;
  view->users_ = users_.Freeze();
  view->items_ = items_.Freeze();
  view->categories_ = categories_.Freeze();
  view->factors_ = factors_.Freeze();
  if (serving_) {
    view->unserved_factors_ = std::exchange(view->factors_, serving_->Freeze());
    serving_->TakeChangedItems();  // the index follows factors_ only
  }
  view->info_ = info_.Freeze();
  view->popularity_ = popularity_.Freeze();
  view->support_ = support_.Freeze();
  view->popular_ = popular_;
  view->category_popular_ = category_popular_.Freeze();
  view->co_counts_ = co_counts_.Freeze();
  view->orders_with_ = orders_with_.Freeze();
  view->orders_ = orders_;
  if (orders_changed_ || !published_orders_) {
    published_orders_ =
        std::make_shared<const std::deque<std::pair<std::string, std::vector<uint32_t>>>>(
            open_orders_);
    orders_changed_ = false;
  }
  view->open_orders_ = published_orders_;
  view->popularity_anchor_ms_ = popularity_anchor_ms_;
  view->interactions_since_retrain_ = interactions_since_retrain_;
  view->retrains_ = retrains_;
  view->last_retrain_ = last_retrain_;
  view->running_ = fit_run_.status();
  view->index_ = index_;
  return view;
}

absl::Status RecommendModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t format = r.U8();
  if (format != 1 && format != kFormat) {
    return absl::DataLossError("recommend checkpoint: unknown format");
  }
  RecommendModel next(options_);
  for (IdDictionary* d : {&next.users_, &next.items_, &next.categories_}) {
    const uint64_t n = r.Varint();
    for (uint64_t i = 0; i < n && r.status().ok(); ++i) d->FindOrAdd(r.Str());
  }
  next.factors_.Decode(r);
  const size_t items = next.items_.size(), categories = next.categories_.size();
  if (next.factors_.num_items() > items) r.Invalidate();
  next.popularity_anchor_ms_ = r.F64();
  next.GrowItems();
  next.category_popular_.Resize(categories);
  for (uint32_t i = 0; i < items && r.status().ok(); ++i) {
    ItemInfo& info = *next.info_.MutableRow(i);
    info.price = r.F32();
    const uint8_t flags = r.U8();
    info.in_stock = flags & 1;
    info.deleted = flags & 2;
    for (uint32_t& c : info.path) {
      const uint64_t v = r.Varint();
      if (v > categories) r.Invalidate();
      c = v == 0 ? ItemInfo::kNoCategory : static_cast<uint32_t>(v - 1);
    }
    *next.popularity_.MutableRow(i) = r.F64();
    const uint64_t n = r.Varint();
    if (n > 0) {
      auto co = std::make_shared<CoCounts>();
      for (uint64_t j = 0; j < n && r.status().ok(); ++j) {
        const uint64_t other = r.Varint();
        if (other >= items) r.Invalidate();
        co->push_back({static_cast<uint32_t>(other), static_cast<uint32_t>(r.Varint())});
      }
      *next.co_counts_.MutableRow(i) = std::move(co);
    }
    *next.orders_with_.MutableRow(i) = static_cast<uint32_t>(r.Varint());
    const uint32_t support = i < next.factors_.num_items() ? next.factors_.ItemSupport(i) : 0;
    *next.support_.MutableRow(i) = support;
    if (support > 0) ++next.items_with_factors_;
  }
  next.popular_ = std::make_shared<const RankedItems>(DecodeRanked(r, items));
  for (uint32_t c = 0; c < categories && r.status().ok(); ++c) {
    RankedItems list = DecodeRanked(r, items);
    if (!list.empty()) {
      *next.category_popular_.MutableRow(c) =
          std::make_shared<const RankedItems>(std::move(list));
    }
  }
  next.orders_ = r.Varint();
  const uint64_t open = r.Varint();
  for (uint64_t o = 0; o < open && r.status().ok(); ++o) {
    std::string id = r.Str();
    std::vector<uint32_t> order_items(std::min<uint64_t>(r.Varint(), r.remaining()));
    for (uint32_t& i : order_items) {
      i = static_cast<uint32_t>(r.Varint());
      if (i >= items) r.Invalidate();
    }
    next.open_order_index_[id] = next.open_orders_.size();
    next.open_orders_.push_back({std::move(id), std::move(order_items)});
  }
  next.interactions_since_retrain_ = r.Varint();
  next.retrains_ = r.Varint();
  // Format 1 may end before the index, and may keep events that waited for a
  // retrain after it: the learner holds those now, so such a state is
  // rebuilt from the log.
  const std::string index_bytes = format == 1 && r.done() ? std::string() : r.Str();
  if (format == 1 && !r.done() && (r.U8() != 0 || r.Varint() != 0)) {
    return absl::FailedPreconditionError(
        "recommend checkpoint: written while events waited for a retrain; rebuilt from the log");
  }
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("recommend checkpoint: trailing bytes");

  if (pending_index_.valid()) pending_index_.wait();
  users_ = std::move(next.users_);
  items_ = std::move(next.items_);
  categories_ = std::move(next.categories_);
  factors_ = std::move(next.factors_);
  info_ = std::move(next.info_);
  popularity_ = std::move(next.popularity_);
  support_ = std::move(next.support_);
  popular_ = std::move(next.popular_);
  category_popular_ = std::move(next.category_popular_);
  co_counts_ = std::move(next.co_counts_);
  orders_with_ = std::move(next.orders_with_);
  orders_ = next.orders_;
  open_orders_ = std::move(next.open_orders_);
  open_order_index_ = std::move(next.open_order_index_);
  open_orders_dropped_ = 0;
  items_with_factors_ = next.items_with_factors_;
  orders_changed_ = true;
  popularity_anchor_ms_ = next.popularity_anchor_ms_;
  interactions_since_retrain_ = next.interactions_since_retrain_;
  retrains_ = next.retrains_;
  fit_run_ = {};
  tail_.clear();
  serving_.reset();
  index_.reset();
  index_backlog_.clear();
  factors_.TakeChangedItems();
  if (WantsIndex() && !index_bytes.empty()) {
    absl::StatusOr<std::unique_ptr<HnswIndex>> index =
        HnswIndex::Decode(options_.ials.dim, options_.hnsw, index_bytes, items_.size());
    if (index.ok()) {
      index_ = std::move(*index);
    } else {
      MERCATO_LOG(kWarning) << "recommend checkpoint: " << index.status() << "; rebuilding the index";
    }
  }
  if (WantsIndex() && !index_) {
    // Serve by exact scan until the index over the restored factors is built.
    pending_index_ = std::async(std::launch::async, [this, state = factors_] {
      SetThreadNice(kRetrainNice);
      return BuildIndex(state, abandoned_);
    });
  }
  return absl::OkStatus();
}

}  // namespace mercato::core
