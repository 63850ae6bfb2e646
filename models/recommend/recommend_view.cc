// Serving: retrieval (exact scan or HNSW), filters, fallbacks and
// explanations, all on an immutable view.
#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "models/recommend/recommend_model.h"

namespace mercato::core {

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

// An explanation names a catalogue feature that gives this share of the
// score or more.
constexpr double kAttributeShare = 0.5;

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

// The hyperparameters a search may change, by name ("weight_<type>" for
// each event type with a weight).
std::vector<std::pair<std::string, double>> Hyperparameters(const IalsHyperparameters& o) {
  std::vector<std::pair<std::string, double>> out = {
      {"unobserved_weight", o.unobserved_weight},
      {"regularization", o.regularization},
      {"decay_half_life_days", o.decay_half_life_days}};
  for (int type = 1; type <= kCountedTypes; ++type) {
    if (o.weights[type] == 0) continue;
    out.emplace_back(absl::StrCat("weight_", EventTypeName(static_cast<EventType>(type))),
                     o.weights[type]);
  }
  return out;
}

}  // namespace

std::vector<RecommendView::Scored> RecommendView::Rank(const Eigen::VectorXf& query,
                                                       size_t count, const Filter& filter,
                                                       const std::vector<uint32_t>* candidates,
                                                       bool exact, int breadth) const {
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
  } else if (!exact && index_.index) {
    const size_t want = std::min(rows.rows(), count + filter.excluded() + count);
    std::vector<uint32_t> found = index_.index->Search(query.data(), want, breadth);
    // The index's candidates whose rows it holds as they are, and every item
    // whose row moved since: all scored on this view's rows.
    const std::vector<uint32_t>& stale = *index_.stale;
    std::erase_if(found, [&](uint32_t item) {
      return item >= rows.rows() || std::binary_search(stale.begin(), stale.end(), item);
    });
    for (uint32_t item : stale) {
      if (item < rows.rows()) found.push_back(item);
    }
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
    for (uint32_t item = 0; item < popularity_.scores.rows(); ++item) {
      const double score = *popularity_.scores.Row(item);
      if (score > 0 && top.Admits(score) && filter.Pass(item, false)) top.Push(score, item);
    }
    out.clear();
    for (const auto& [score, item] : top.Take()) out.push_back({score, item});
  }
  // Anchored scores to today's decayed popularity.
  const double scale = popularity_.Scale(factors_.now_ms);
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
// c_i h_j' A^-1 h_i. A is factorised once for all of `ranked`. An item's
// prior is the mean of its m fitted feature rows f, so feature f's part is
// query.f / m: of the whole score of an item without interactions, and of
// the part the prior leads for one with few.
void RecommendView::Explain(const History& history, const Eigen::VectorXf& query,
                            const std::vector<Scored>& ranked,
                            std::vector<Recommendation>& out) const {
  for (size_t r = 0; r < ranked.size() && r < out.size(); ++r) {
    const ItemFeatures* features = factors_.features(ranked[r].item);
    if (features == nullptr) continue;
    const float score =
        query.dot(Eigen::Map<const Eigen::VectorXf>(factors_.items.Row(ranked[r].item), dim()));
    std::vector<std::pair<float, uint32_t>> parts;  // query.f, feature id
    for (uint32_t id : features->ids) {
      if (id == 0) break;
      if (id > factors_.feature_rows.rows()) continue;
      const Eigen::Map<const Eigen::VectorXf> row(factors_.feature_rows.Row(id - 1), dim());
      if (!row.isZero()) parts.push_back({query.dot(row), id - 1});
    }
    if (parts.empty() || score <= 0) continue;
    const auto best = std::max_element(parts.begin(), parts.end());
    const double share = best->first / static_cast<float>(parts.size()) / score;
    if (share < kAttributeShare) continue;
    out[r].attribute = features_.Name(best->second);
    out[r].attribute_share = std::min(1.0, share);
  }
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
        options_.ials.weights[static_cast<int>(EventType::kView)]);
    it->last_ms = std::max(it->last_ms, factors_.now_ms);
  }
  std::vector<uint32_t> candidates;
  for (const std::string& id : q.candidate_item_ids) {
    if (auto item = items_.Find(id)) candidates.push_back(*item);
  }
  const std::vector<uint32_t>* only = q.candidate_item_ids.empty() ? nullptr : &candidates;

  std::vector<Recommendation> out;
  // The personal or session query.
  Eigen::VectorXf vec;
  // Appends `ranked` (as far as `count` allows), explained from `explain`.
  const auto emit = [&](std::vector<Scored> ranked, RecommendSource source,
                        const History* explain) {
    ranked.resize(std::min(ranked.size(), q.count - out.size()));
    std::vector<Recommendation> added;
    for (const Scored& s : ranked) {
      filter.Exclude(s.item);
      added.push_back({items_.Name(s.item), s.score, source, {}});
    }
    if (explain && q.explain) Explain(*explain, vec, ranked, added);
    for (Recommendation& r : added) out.push_back(std::move(r));
  };

  // Personal or session scores.
  if (!q.popular_only && has_context) {
    vec = FoldIn(history);
  } else if (!q.popular_only && has_history) {
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
    for (uint32_t item : candidates) subset.push_back({*popularity_.scores.Row(item), item});
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
    const RowBlockView<std::shared_ptr<const RankedItems>>& lists = popularity_.by_category;
    if (out.size() < q.count && c < lists.rows() && *lists.Row(c)) {
      emit(popular_among(**lists.Row(c), false), RecommendSource::kCategoryPopular, nullptr);
    }
  }
  if (out.size() < q.count) {
    emit(popular_among(*popularity_.overall, true), RecommendSource::kPopular, nullptr);
  }
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
  for (const CoPurchaseRule& r : co_purchase_.Rules(
           *item, count, min_support, [&](uint32_t other) { return !info_.Row(other)->deleted; })) {
    out.push_back({items_.Name(r.other), r.support, r.confidence, r.lift});
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

std::vector<uint32_t> RecommendView::TopItems(const float* query, size_t k, bool exact,
                                              int breadth) const {
  if (!exact && !index_.index) return {};
  ItemFilter none;
  Filter filter(*this, none, {});
  std::vector<uint32_t> out;
  for (const Scored& s : Rank(Eigen::Map<const Eigen::VectorXf>(query, dim()), k, filter,
                              nullptr, exact, breadth)) {
    out.push_back(s.item);
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> RecommendView::Counts() const {
  std::vector<std::pair<std::string, uint64_t>> out = {
      {"users", users_.size()},
      {"items", items_.size()},
      {"categories", categories_.size()},
      {"item_features", features_.size()},
      {"orders", co_purchase_.orders},
      {"retrains", retrains_},
      {"hnsw_items", index_.index ? index_.index->size() : 0},
      {"hnsw_stale_items", index_.stale ? index_.stale->size() : 0}};
  if (tuning_) out.emplace_back("holdout_users", tuning_->holdout_users);
  return out;
}

std::vector<std::pair<std::string, double>> RecommendView::Gauges() const {
  std::vector<std::pair<std::string, double>> out = Hyperparameters(options_.ials);
  if (tuning_) {
    const IalsTrial& t = tuning_->adopted();
    out.insert(out.end(), {{"holdout_hr_at_10", t.hr_at_10},
                           {"holdout_ndcg_at_10", t.ndcg_at_10},
                           {"holdout_recall_at_20", t.recall_at_20}});
  }
  return out;
}

std::vector<FitTrial> RecommendView::Trials() const {
  std::vector<FitTrial> out;
  if (!tuning_) return out;
  for (size_t i = 0; i < tuning_->trials.size(); ++i) {
    const IalsTrial& t = tuning_->trials[i];
    out.push_back(
        {Hyperparameters(t.hyperparameters),
         {{"hr_at_10", t.hr_at_10}, {"ndcg_at_10", t.ndcg_at_10}, {"recall_at_20", t.recall_at_20}},
         i == tuning_->winner});
  }
  return out;
}

}  // namespace mercato::core
