#include "models/recommend/ials.h"

#include <algorithm>
#include <cmath>

namespace mercato::core {
namespace {

constexpr int kRowsPerBlock = 256;
constexpr double kMsPerDay = 24.0 * 3600 * 1000;

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Solves (a0 G + X' diag(c) X + reg I) v = X' c + reg p by `steps`
// conjugate-gradient steps from v (p = 0 when null).
void ConjugateGradient(const Eigen::MatrixXd& gram, double a0, double reg, const Eigen::MatrixXd& x,
                       const Eigen::VectorXd& c, int steps, Eigen::VectorXd& v,
                       const Eigen::VectorXd* prior) {
  auto apply = [&](const Eigen::VectorXd& p) -> Eigen::VectorXd {
    Eigen::VectorXd out = a0 * (gram * p) + reg * p;
    if (x.rows() > 0) out.noalias() += x.transpose() * c.cwiseProduct(x * p);
    return out;
  };
  Eigen::VectorXd r = -apply(v);
  if (x.rows() > 0) r.noalias() += x.transpose() * c;
  if (prior) r += reg * *prior;
  Eigen::VectorXd p = r;
  double rs = r.squaredNorm();
  for (int s = 0; s < steps && rs > 1e-20; ++s) {
    const Eigen::VectorXd ap = apply(p);
    const double alpha = rs / p.dot(ap);
    v += alpha * p;
    r -= alpha * ap;
    const double next = r.squaredNorm();
    p = r + (next / rs) * p;
    rs = next;
  }
}

Eigen::VectorXd Load(const float* row, int k) {
  return Eigen::Map<const Eigen::VectorXf>(row, k).cast<double>();
}

}  // namespace

double DecayedConfidence(const IalsHyperparameters& options, float confidence, int64_t last_ms,
                         int64_t now_ms) {
  if (options.decay_half_life_days <= 0 || now_ms <= last_ms) return confidence;
  const double days = static_cast<double>(now_ms - last_ms) / kMsPerDay;
  return confidence * std::exp2(-days / options.decay_half_life_days);
}

double CountedWeight(const Interaction& in, const IalsHyperparameters& h) {
  double w = 0;
  for (int t = 0; t < kCountedTypes; ++t) w += static_cast<double>(h.weights[t + 1]) * in.counts[t];
  return w;
}

float Reweighed(const Interaction& in, const IalsHyperparameters& from,
                const IalsHyperparameters& to) {
  if (in.confidence <= 0) return 0;
  if (from.weights == to.weights && from.decay_half_life_days == to.decay_half_life_days) {
    return in.confidence;
  }
  const double before = CountedWeight(in, from), after = CountedWeight(in, to);
  if (before <= 0) return in.confidence;
  if (after <= 0) return 0;
  // The share of its undecayed confidence the pair kept under `from`.
  double kept = std::min(1.0, static_cast<double>(in.confidence) / before);
  if (from.decay_half_life_days <= 0 || to.decay_half_life_days <= 0) {
    kept = to.decay_half_life_days <= 0 ? 1 : kept;
  } else {
    kept = std::pow(kept, from.decay_half_life_days / to.decay_half_life_days);
  }
  return static_cast<float>(after * kept);
}

bool IalsHyperparameters::Valid() const {
  bool finite = std::isfinite(unobserved_weight) && std::isfinite(regularization) &&
                std::isfinite(decay_half_life_days);
  for (float x : weights) finite = finite && std::isfinite(x);
  return finite && unobserved_weight >= 0 && regularization > 0 && decay_half_life_days >= 0;
}

void IalsHyperparameters::Encode(ByteWriter& w) const {
  w.F64(unobserved_weight);
  w.F64(regularization);
  w.F64(decay_half_life_days);
  for (float x : weights) w.F32(x);
}

IalsHyperparameters IalsHyperparameters::Decode(ByteReader& r) {
  IalsHyperparameters h;
  h.unobserved_weight = r.F64();
  h.regularization = r.F64();
  h.decay_half_life_days = r.F64();
  for (float& x : h.weights) x = r.F32();
  if (!h.Valid()) r.Invalidate();
  return h;
}

double UnobservedWeight(const IalsOptions& options, size_t items) {
  return options.unobserved_weight / static_cast<double>(std::max<size_t>(1, items));
}

double RowRegularization(const IalsOptions& options, size_t n, double a0, size_t others) {
  return options.regularization *
         std::pow(static_cast<double>(n) + a0 * static_cast<double>(others),
                  options.regularization_exponent);
}

void SolveFactorRow(const IalsOptions& options, const Eigen::MatrixXd& gram, double a0,
                    size_t others, const Eigen::MatrixXd& x, const Eigen::VectorXd& c,
                    Eigen::VectorXd& v, const Eigen::VectorXd* prior) {
  if (x.rows() == 0) {
    if (prior) {
      v = *prior;
    } else {
      v.setZero();
    }
    return;
  }
  ConjugateGradient(gram, a0, RowRegularization(options, x.rows(), a0, others), x, c,
                    options.cg_steps, v, prior);
}

IalsState::IalsState(const IalsOptions& options)
    : options_(options),
      users_(options.dim, kRowsPerBlock),
      items_(options.dim, kRowsPerBlock),
      histories_(1, kRowsPerBlock),
      user_pending_(1, kRowsPerBlock),
      item_pending_(1, kRowsPerBlock),
      item_features_(1, kRowsPerBlock),
      feature_rows_(options.dim, kRowsPerBlock),
      gram_users_(Eigen::MatrixXd::Zero(options.dim, options.dim)),
      gram_items_(Eigen::MatrixXd::Zero(options.dim, options.dim)) {}

void IalsState::Grow(uint32_t user, uint32_t item) {
  if (user >= users_.rows()) {
    users_.Resize(user + 1);
    histories_.Resize(user + 1);
    user_pending_.Resize(user + 1);
  }
  GrowItems(item);
}

void IalsState::GrowItems(uint32_t item) {
  if (item < items_.rows()) return;
  items_.Resize(item + 1);
  item_users_.resize(item + 1);
  item_pending_.Resize(item + 1);
  item_features_.Resize(item + 1);
}

void IalsState::SetRow(RowBlockMatrix<float>& rows, Eigen::MatrixXd& gram, uint32_t r,
                       const Eigen::VectorXd& v) {
  const int k = options_.dim;
  const Eigen::VectorXd old = Load(rows.Row(r), k);
  Eigen::Map<Eigen::VectorXf>(rows.MutableRow(r), k) = v.cast<float>();
  const Eigen::VectorXd now = Load(rows.Row(r), k);
  gram.noalias() += now * now.transpose();
  gram.noalias() -= old * old.transpose();
}

void IalsState::Observe(uint32_t user, uint32_t item, EventType type, int64_t t_ms) {
  const int t = static_cast<int>(type);
  const uint8_t flags = type == EventType::kPurchase ? (kSeen | kPurchased)
                        : type == EventType::kRefund ? 0
                                                     : kSeen;
  Grow(user, item);
  now_ms_ = std::max(now_ms_, t_ms);

  // The user's history (copied: published views may share it).
  std::shared_ptr<const History>* slot = histories_.MutableRow(user);
  auto history = *slot ? std::make_shared<History>(**slot) : std::make_shared<History>();
  auto it = std::lower_bound(history->begin(), history->end(), item,
                             [](const Interaction& a, uint32_t i) { return a.item < i; });
  if (it == history->end() || it->item != item) it = history->insert(it, Interaction{item});
  const double confidence =
      std::max(0.0, DecayedConfidence(options_, it->confidence, it->last_ms, t_ms) +
                        static_cast<double>(options_.weights[t]));
  it->confidence = static_cast<float>(confidence);
  it->last_ms = std::max(it->last_ms, t_ms);
  it->flags |= flags;
  if (t >= 1 && t <= kCountedTypes && it->counts[t - 1] < 255) ++it->counts[t - 1];
  const Interaction pair = *it;
  const size_t user_n = history->size();
  *slot = std::move(history);

  std::vector<ItemEntry>& users = item_users_[item];
  auto jt = std::lower_bound(users.begin(), users.end(), user,
                             [](const ItemEntry& a, uint32_t u) { return a.user < u; });
  if (jt == users.end() || jt->user != user) jt = users.insert(jt, ItemEntry{user, 0, 0});
  jt->confidence = pair.confidence;
  jt->last_ms = pair.last_ms;

  SeedItemRow(item);

  const auto due = [&](uint32_t& pending, size_t n) {
    const size_t every = std::max<size_t>(1, n / std::max(1, options_.fold_in_cap));
    if (++pending < every) return false;
    pending = 0;
    return true;
  };
  if (due(*user_pending_.MutableRow(user), user_n)) SolveUserRow(user);
  if (due(*item_pending_.MutableRow(item), users.size())) SolveItemRow(item);
}

Eigen::VectorXd IalsState::SeedRow(uint32_t item) const {
  const int k = options_.dim;
  uint64_t state = options_.seed ^ (0x2545f4914f6cdd1dULL * (item + 1));
  Eigen::VectorXd init(k);
  const double scale = 0.1 / std::sqrt(static_cast<double>(k));
  for (int d = 0; d < k; ++d) {
    init[d] = scale * (static_cast<double>(SplitMix64(state) >> 11) * 0x1.0p-53 * 2 - 1);
  }
  return init;
}

// A new item starts from a small seeded random row, so that the very first
// solves have something to align with.
void IalsState::SeedItemRow(uint32_t item) {
  if (!Eigen::Map<const Eigen::VectorXf>(items_.Row(item), options_.dim).isZero()) return;
  SetRow(items_, gram_items_, item, SeedRow(item));
}

std::vector<uint32_t> IalsState::ForgetUser(uint32_t user) {
  std::vector<uint32_t> items;
  if (user >= users_.rows()) return items;
  std::shared_ptr<const History>* slot = histories_.MutableRow(user);
  if (*slot) {
    for (const Interaction& in : **slot) {
      items.push_back(in.item);
      std::vector<ItemEntry>& users = item_users_[in.item];
      auto jt = std::lower_bound(users.begin(), users.end(), user,
                                 [](const ItemEntry& a, uint32_t u) { return a.user < u; });
      if (jt != users.end() && jt->user == user) users.erase(jt);
      if (users.empty()) ResetColdRow(in.item);
    }
  }
  slot->reset();
  SetRow(users_, gram_users_, user, Eigen::VectorXd::Zero(options_.dim));
  return items;
}

void IalsState::SolveUserRow(uint32_t user) {
  const std::shared_ptr<const History>& h = *histories_.Row(user);
  Eigen::MatrixXd x;
  Eigen::VectorXd c;
  GatherObserved(options_, now_ms_, h ? *h : History{},
                 [&](const Interaction& in) { return items_.Row(in.item); }, x, c);
  Eigen::VectorXd v = Load(users_.Row(user), options_.dim);
  SolveFactorRow(options_, gram_items_, UnobservedWeight(options_, items_.rows()), items_.rows(),
                 x, c, v);
  SetRow(users_, gram_users_, user, v);
}

void IalsState::SolveItemRow(uint32_t item) {
  Eigen::MatrixXd x;
  Eigen::VectorXd c;
  GatherObserved(options_, now_ms_, item_users_[item],
                 [&](const ItemEntry& e) { return users_.Row(e.user); }, x, c);
  Eigen::VectorXd v = Load(items_.Row(item), options_.dim);
  Eigen::VectorXd prior;
  const bool has_prior = Prior(item, prior);
  // The prior counts as options_.prior_interactions interactions: it leads
  // a new item and fades as the item's own ones come.
  if (has_prior) {
    prior *=
        options_.prior_interactions / (options_.prior_interactions + static_cast<double>(x.rows()));
  }
  SolveFactorRow(options_, gram_users_, UnobservedWeight(options_, items_.rows()), users_.rows(), x,
                 c, v, has_prior ? &prior : nullptr);
  SetRow(items_, gram_items_, item, v);
  changed_items_.push_back(item);
}

Eigen::MatrixXd IalsState::Gramian(const RowBlockMatrix<float>& rows) {
  const int k = rows.cols();
  Eigen::MatrixXd g = Eigen::MatrixXd::Zero(k, k);
  for (size_t r = 0; r < rows.rows(); ++r) {
    const Eigen::VectorXd v = Load(rows.Row(r), k);
    g.noalias() += v * v.transpose();
  }
  return g;
}

bool IalsState::Train(int epochs, const std::atomic<bool>* stop) {
  const auto stopped = [stop] { return stop && stop->load(std::memory_order_relaxed); };
  for (int e = 0; e < epochs; ++e) {
    for (uint32_t u = 0; u < users_.rows(); ++u) {
      if (stopped()) return false;
      SolveUserRow(u);
    }
    gram_users_ = Gramian(users_);
    for (uint32_t i = 0; i < items_.rows(); ++i) {
      if (stopped()) return false;
      SolveItemRow(i);
    }
    FitFeatureRows();
    gram_items_ = Gramian(items_);
  }
  for (uint32_t u = 0; u < users_.rows(); ++u) *user_pending_.MutableRow(u) = 0;
  for (uint32_t i = 0; i < items_.rows(); ++i) *item_pending_.MutableRow(i) = 0;
  changed_items_.clear();
  return true;
}

IalsState IalsState::Restarted(const IalsOptions& options,
                               const std::function<bool(uint32_t, Interaction&)>& keep) const {
  IalsState next(options);
  next.now_ms_ = now_ms_;
  const size_t users = users_.rows(), items = items_.rows();
  next.users_.Resize(users);
  next.histories_.Resize(users);
  next.user_pending_.Resize(users);
  next.items_.Resize(items);
  next.item_pending_.Resize(items);
  next.item_features_ = item_features_;  // the feature rows are fitted again
  next.item_users_.assign(items, {});
  for (uint32_t u = 0; u < users; ++u) {
    const History* h = history(u);
    if (h == nullptr) continue;
    auto kept = std::make_shared<History>();
    for (Interaction in : *h) {
      if (!keep(u, in)) continue;
      kept->push_back(in);
      kept->back().confidence = Reweighed(in, options_, options);
      next.item_users_[in.item].push_back(ItemEntry{u, kept->back().confidence, in.last_ms});
    }
    if (!kept->empty()) *next.histories_.MutableRow(u) = std::move(kept);
  }
  for (uint32_t i = 0; i < items; ++i) {
    if (!next.item_users_[i].empty()) next.SeedItemRow(i);
  }
  next.changed_items_.clear();
  return next;
}

bool IalsState::Prior(uint32_t item, Eigen::VectorXd& prior) const {
  if (item >= item_features_.rows()) return false;
  int n = 0;
  for (uint32_t id : item_features_.Row(item)->ids) {
    if (id == 0) break;
    if (id > feature_rows_.rows()) continue;
    const Eigen::Map<const Eigen::VectorXf> row(feature_rows_.Row(id - 1), options_.dim);
    if (row.isZero()) continue;  // no item with interactions has it yet
    if (n++ == 0) prior = Eigen::VectorXd::Zero(options_.dim);
    prior += row.cast<double>();
  }
  if (n > 0) prior /= n;
  return n > 0;
}

bool IalsState::HasRow(uint32_t item) const {
  if (ItemSupport(item) > 0) return true;
  return item < items_.rows() && !item_features_.Row(item)->empty() &&
         !Eigen::Map<const Eigen::VectorXf>(items_.Row(item), options_.dim).isZero();
}

void IalsState::SetItemFeatures(uint32_t item, const ItemFeatures& features) {
  GrowItems(item);
  if (*item_features_.Row(item) == features) return;
  *item_features_.MutableRow(item) = features;
  if (item_users_[item].empty()) ResetColdRow(item);
}

void IalsState::ResetColdRow(uint32_t item) {
  Eigen::VectorXd v;
  // With its seed row added, items of the same features differ a little:
  // no ties among them, and no identical vectors in the HNSW graph.
  if (Prior(item, v)) {
    v += SeedRow(item);
  } else {
    v = Eigen::VectorXd::Zero(options_.dim);
  }
  if (Load(items_.Row(item), options_.dim) == v.cast<float>().cast<double>()) return;
  SetRow(items_, gram_items_, item, v);
  changed_items_.push_back(item);
}

void IalsState::FitFeatureRows() {
  const int k = options_.dim;
  uint32_t features = 0;
  for (uint32_t i = 0; i < item_features_.rows(); ++i) {
    for (uint32_t id : item_features_.Row(i)->ids) features = std::max(features, id);
  }
  if (features == 0) return;
  Eigen::MatrixXd sums = Eigen::MatrixXd::Zero(k, features);
  Eigen::VectorXd counts = Eigen::VectorXd::Zero(features), norms = counts;
  for (uint32_t i = 0; i < item_features_.rows(); ++i) {
    if (item_users_[i].empty()) continue;
    const Eigen::VectorXd row = Load(items_.Row(i), k);
    for (uint32_t id : item_features_.Row(i)->ids) {
      if (id == 0) break;
      sums.col(id - 1) += row;
      counts[id - 1] += 1;
      norms[id - 1] += row.norm();
    }
  }
  // The mean direction of the feature's items, at their mean length: a mean
  // of rows is shorter than a row (their own parts cancel), and would rank
  // a new item below every item like it. Shrunk toward zero when few.
  feature_rows_.Resize(features);
  for (uint32_t f = 0; f < features; ++f) {
    const double length = sums.col(f).norm();
    const double scale =
        length > 0 ? norms[f] / length / (counts[f] + options_.feature_shrinkage) : 0;
    Eigen::Map<Eigen::VectorXf>(feature_rows_.MutableRow(f), k) =
        (sums.col(f) * scale).cast<float>();
  }
  for (uint32_t i = 0; i < item_features_.rows(); ++i) {
    if (item_users_[i].empty() && !item_features_.Row(i)->empty()) ResetColdRow(i);
  }
}

void IalsState::SetHyperparameters(const IalsHyperparameters& h) {
  const IalsOptions next = options_.With(h);
  if (next.weights != options_.weights ||
      next.decay_half_life_days != options_.decay_half_life_days) {
    for (uint32_t u = 0; u < users_.rows(); ++u) {
      std::shared_ptr<const History>* slot = histories_.MutableRow(u);
      if (!*slot) continue;
      auto history = std::make_shared<History>(**slot);
      for (Interaction& in : *history) {
        in.confidence = Reweighed(in, options_, next);
        std::vector<ItemEntry>& users = item_users_[in.item];
        auto jt = std::lower_bound(users.begin(), users.end(), u,
                                   [](const ItemEntry& a, uint32_t v) { return a.user < v; });
        if (jt != users.end() && jt->user == u) jt->confidence = in.confidence;
      }
      *slot = std::move(history);
    }
  }
  options_ = next;
}

std::vector<uint32_t> IalsState::TakeChangedItems() {
  std::vector<uint32_t> out;
  out.swap(changed_items_);
  return out;
}

namespace {

void EncodeRows(ByteWriter& w, const RowBlockView<float>& rows) {
  w.Varint(rows.rows());
  for (size_t r = 0; r < rows.rows(); ++r) w.Raw(rows.Row(r), sizeof(float) * rows.cols());
}

void DecodeRows(ByteReader& r, RowBlockMatrix<float>& rows) {
  const uint64_t n = r.Varint();
  if (n > r.remaining() / (sizeof(float) * rows.cols())) {
    r.Invalidate();
    return;
  }
  rows.Resize(n);
  for (size_t i = 0; i < n; ++i) r.Raw(rows.MutableRow(i), sizeof(float) * rows.cols());
}

void EncodeMatrix(ByteWriter& w, const Eigen::MatrixXd& m) {
  w.Raw(m.data(), sizeof(double) * m.size());
}

void DecodeMatrix(ByteReader& r, Eigen::MatrixXd& m) { r.Raw(m.data(), sizeof(double) * m.size()); }

}  // namespace

IalsFrozen IalsState::Freeze() {
  IalsFrozen f;
  f.users = users_.Freeze();
  f.items = items_.Freeze();
  f.histories = histories_.Freeze();
  f.user_pending = user_pending_.Freeze();
  f.item_pending = item_pending_.Freeze();
  f.item_features = item_features_.Freeze();
  f.feature_rows = feature_rows_.Freeze();
  if (!frozen_gram_users_ || *frozen_gram_users_ != gram_users_) {
    frozen_gram_users_ = std::make_shared<const Eigen::MatrixXd>(gram_users_);
  }
  if (!frozen_gram_items_ || *frozen_gram_items_ != gram_items_) {
    frozen_gram_items_ = std::make_shared<const Eigen::MatrixXd>(gram_items_);
  }
  f.gram_users = frozen_gram_users_;
  f.gram_items = frozen_gram_items_;
  f.now_ms = now_ms_;
  return f;
}

void IalsFrozen::Encode(ByteWriter& w) const {
  w.Varint(users.cols());
  w.I64(now_ms);
  EncodeRows(w, users);
  EncodeRows(w, items);
  EncodeMatrix(w, *gram_users);
  EncodeMatrix(w, *gram_items);
  for (size_t u = 0; u < users.rows(); ++u) {
    const std::shared_ptr<const History>& h = *histories.Row(u);
    w.Varint(h ? h->size() : 0);
    if (h) {
      for (const Interaction& in : *h) {
        w.Varint(in.item);
        w.F32(in.confidence);
        w.I64(in.last_ms);
        w.U8(in.flags);
        for (uint8_t n : in.counts) w.U8(n);
      }
    }
    w.Varint(*user_pending.Row(u));
  }
  for (size_t i = 0; i < items.rows(); ++i) w.Varint(*item_pending.Row(i));
}

void IalsFrozen::EncodeFeatures(ByteWriter& w) const {
  EncodeRows(w, feature_rows);
  w.Varint(item_features.rows());
  for (size_t i = 0; i < item_features.rows(); ++i) {
    for (uint32_t id : item_features.Row(i)->ids) w.Varint(id);
  }
}

void IalsState::DecodeFeatures(ByteReader& r, size_t items, size_t features) {
  RowBlockMatrix<float> rows(options_.dim, kRowsPerBlock);
  DecodeRows(r, rows);
  const uint64_t n = r.Varint();
  if (n > items || n > items_.rows()) r.Invalidate();
  if (!r.status().ok()) return;
  if (rows.rows() > features) r.Invalidate();
  RowBlockMatrix<ItemFeatures> item_features(1, kRowsPerBlock);
  item_features.Resize(items_.rows());
  for (size_t i = 0; i < n && r.status().ok(); ++i) {
    for (uint32_t& id : item_features.MutableRow(i)->ids) {
      const uint64_t v = r.Varint();
      if (v > features) r.Invalidate();
      id = static_cast<uint32_t>(v);
    }
  }
  if (!r.status().ok()) return;
  feature_rows_ = std::move(rows);
  item_features_ = std::move(item_features);
}

void IalsState::Decode(ByteReader& r, bool counts) {
  IalsState next(options_);
  if (r.Varint() != static_cast<uint64_t>(options_.dim)) {
    r.Invalidate();
    return;
  }
  next.now_ms_ = r.I64();
  DecodeRows(r, next.users_);
  DecodeRows(r, next.items_);
  DecodeMatrix(r, next.gram_users_);
  DecodeMatrix(r, next.gram_items_);
  const size_t users = next.users_.rows(), items = next.items_.rows();
  next.histories_.Resize(users);
  next.user_pending_.Resize(users);
  next.item_pending_.Resize(items);
  next.item_features_.Resize(items);
  next.item_users_.assign(items, {});
  for (size_t u = 0; u < users && r.status().ok(); ++u) {
    const uint64_t n = r.Varint();
    if (n > 0) {
      auto h = std::make_shared<History>();
      for (uint64_t j = 0; j < n && r.status().ok(); ++j) {
        Interaction in;
        in.item = static_cast<uint32_t>(r.Varint());
        in.confidence = r.F32();
        in.last_ms = r.I64();
        in.flags = r.U8();
        if (counts) {
          for (uint8_t& n : in.counts) n = r.U8();
        }
        if (in.item >= items) {
          r.Invalidate();
          return;
        }
        h->push_back(in);
        next.item_users_[in.item].push_back(
            ItemEntry{static_cast<uint32_t>(u), in.confidence, in.last_ms});
      }
      *next.histories_.MutableRow(u) = std::move(h);
    }
    *next.user_pending_.MutableRow(u) = static_cast<uint32_t>(r.Varint());
  }
  for (size_t i = 0; i < items && r.status().ok(); ++i) {
    *next.item_pending_.MutableRow(i) = static_cast<uint32_t>(r.Varint());
  }
  if (r.status().ok()) *this = std::move(next);
}

}  // namespace mercato::core
