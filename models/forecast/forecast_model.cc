#include "models/forecast/forecast_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/bytes.h"

namespace mercato::core {
namespace {

// 3: the fits' states, error profiles and served errors. Formats 1 and 2
// are rebuilt from the log.
constexpr uint8_t kFormat = 3;
constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int kWeek = 7;
// Closed days a smoothing method needs; fewer than a week borrow the
// category's profile.
constexpr int kFitDays = 4 * kWeek;

int Weekday(int64_t day) { return static_cast<int>(((day % kWeek) + kWeek) % kWeek); }

// `slot`'s history to change: itself when nothing else holds it (only the
// learner publishes, so no view can take it meanwhile), else a copy, so that
// no reader sees a change.
DemandHistory& Own(std::shared_ptr<const DemandHistory>& slot) {
  if (!slot || slot.use_count() > 1) {
    slot = std::make_shared<DemandHistory>(slot ? *slot : DemandHistory{});
  }
  return const_cast<DemandHistory&>(*slot);  // made non-const here
}

// The closed days of `h` up to `today` (exclusive), zeros where nothing sold
// and no day below 0 (refunds of earlier days).
std::vector<double> ClosedDays(const DemandHistory& h, int64_t today) {
  std::vector<double> y;
  if (h.size() == 0 || h.first_day >= today) return y;
  y.assign(static_cast<size_t>(today - h.first_day), 0.0);
  for (size_t i = 0; i < h.size() && i < y.size(); ++i) y[i] = std::max(0.0, h[i]);
  return y;
}

// The sales of `day` in `h`: 0 outside it, never below 0.
double DayValue(const DemandHistory* h, int64_t day) {
  if (!h || day < h->first_day || day - h->first_day >= static_cast<int64_t>(h->size())) return 0;
  return std::max(0.0, (*h)[static_cast<size_t>(day - h->first_day)]);
}


// Weekdays on which the shop sold nothing in each of its last four weeks,
// while it sold on other days.
ClosedWeekdays ClosedFrom(const DemandHistory* shop, int64_t today) {
  ClosedWeekdays closed{};
  if (!shop) return closed;
  const std::vector<double> y = ClosedDays(*shop, today);
  if (y.size() < static_cast<size_t>(kFitDays)) return closed;
  std::array<double, kWeek> sold{};
  double total = 0;
  for (size_t i = y.size() - kFitDays; i < y.size(); ++i) {
    sold[Weekday(shop->first_day + static_cast<int64_t>(i))] += y[i];
    total += y[i];
  }
  for (int w = 0; w < kWeek; ++w) closed[w] = total > 0 && sold[w] == 0;
  return closed;
}

void EncodeHistory(ByteWriter& w, const DemandHistory* h) {
  w.U8(h != nullptr);
  if (!h) return;
  w.I64(h->first_day);
  w.Varint(h->settled_days());
  w.Varint(h->recent.size());
  for (size_t i = 0; i < h->size(); ++i) w.F64((*h)[i]);
}

std::shared_ptr<const DemandHistory> DecodeHistory(ByteReader& r, int history_days) {
  if (r.U8() == 0) return nullptr;
  auto h = std::make_shared<DemandHistory>();
  h->first_day = r.I64();
  const uint64_t settled = r.Varint(), recent = r.Varint();
  if (settled > static_cast<uint64_t>(history_days) || recent > static_cast<uint64_t>(history_days)) {
    r.Invalidate();
    return h;
  }
  std::vector<double> days;
  for (uint64_t i = 0; i < settled && r.status().ok(); ++i) days.push_back(r.F64());
  if (settled > 0) h->settled = std::make_shared<const std::vector<double>>(std::move(days));
  for (uint64_t i = 0; i < recent && r.status().ok(); ++i) h->recent.push_back(r.F64());
  return h;
}

void EncodeFit(ByteWriter& w, const SeriesFit& f) {
  w.U8(f.errors != nullptr);
  if (!f.errors) return;
  f.state.Encode(w);
  w.U8(f.intermittent);
  for (double v : {f.mase, f.naive_mase, f.scale, f.typical_error, f.recent_error}) w.F64(v);
  f.errors->daily.Encode(w);
  f.errors->cumulative.Encode(w);
  for (double v : f.week_ahead) w.F64(v);
}

SeriesFit DecodeFit(ByteReader& r) {
  SeriesFit f;
  if (r.U8() == 0) return f;
  f.state = DemandState::Decode(r);
  f.intermittent = r.U8() != 0;
  for (double* v : {&f.mase, &f.naive_mase, &f.scale, &f.typical_error, &f.recent_error}) *v = r.F64();
  ErrorProfiles errors;
  errors.daily = ErrorProfile::Decode(r);
  errors.cumulative = ErrorProfile::Decode(r);
  f.errors = std::make_shared<const ErrorProfiles>(std::move(errors));
  for (double& v : f.week_ahead) v = r.F64();
  return f;
}

void EncodeServed(ByteWriter& w, const ServedErrors& e) {
  w.I64(e.day);
  for (double v : {e.abs1, e.n1, e.abs7, e.n7}) w.F64(v);
}

ServedErrors DecodeServed(ByteReader& r) {
  ServedErrors e;
  e.day = r.I64();
  for (double* v : {&e.abs1, &e.n1, &e.abs7, &e.n7}) *v = r.F64();
  return e;
}

// Weight of a day in SeriesFit::recent_error: a half-life of 28 days.
const double kRecentWeight = 1 - std::pow(0.5, 1.0 / 28);

// Steps `f` through a day's sales `y`.
void StepFit(SeriesFit& f, double y, int wd, const ClosedWeekdays& closed) {
  if (!closed[wd]) f.recent_error += kRecentWeight * (std::abs(y - f.state.Ahead(1, wd, closed)) - f.recent_error);
  f.state.Step(y, wd, closed);
}

// Steps `f` through the days [from, to) of `h`.
void StepFitDays(SeriesFit& f, const DemandHistory* h, int64_t from, int64_t to,
                 const ClosedWeekdays& closed) {
  for (int64_t d = from; d < to; ++d) StepFit(f, DayValue(h, d), Weekday(d), closed);
}

// A fit's state for `s` with its errors, stepped through the days before
// `settled`.
SeriesFit FitFrom(const DemandChoice& c, const DemandSeries& s, int64_t settled) {
  SeriesFit f;
  f.state = DemandState(c.fit, s);
  const std::vector<double>& one_day = c.backtest.errors.front();
  for (double e : one_day) f.typical_error += std::abs(e) / static_cast<double>(one_day.size());
  f.recent_error = f.typical_error;
  const int64_t days = std::clamp<int64_t>(settled - s.first_day, 0, static_cast<int64_t>(s.y.size()));
  for (int64_t t = 0; t < days; ++t) {
    StepFit(f, s.y[static_cast<size_t>(t)], Weekday(s.first_day + t), s.closed);
  }
  f.intermittent = c.intermittent;
  f.mase = c.backtest.mase;
  f.naive_mase = c.naive_mase;
  f.scale = c.backtest.scale;
  f.errors = std::make_shared<const ErrorProfiles>(ProfilesOf(c.backtest));
  f.week_ahead.fill(std::numeric_limits<double>::quiet_NaN());
  return f;
}

}  // namespace

int64_t ShopDay(int64_t timestamp_ms, int utc_offset_minutes) {
  const int64_t local = timestamp_ms + int64_t{utc_offset_minutes} * 60000;
  return local >= 0 ? local / kDayMs : -((-local + kDayMs - 1) / kDayMs);
}

absl::StatusOr<ShopCalendar> ShopCalendar::Of(const ForecastOptions& options) {
  ShopCalendar c;
  c.utc_offset_minutes_ = options.utc_offset_minutes;
  if (options.time_zone.empty()) return c;
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(options.time_zone, &zone)) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_zone: no time zone '", options.time_zone, "' in the system's zoneinfo"));
  }
  c.zone_ = zone;
  return c;
}

int64_t ShopCalendar::Day(int64_t timestamp_ms) const {
  if (!zone_) return ShopDay(timestamp_ms, utc_offset_minutes_);
  return absl::ToCivilDay(absl::FromUnixMillis(timestamp_ms), *zone_) - absl::CivilDay(1970, 1, 1);
}

ForecastModel::ForecastModel(ForecastOptions options)
    : options_(options),
      // An unknown zone, which the flags refuse, counts as UTC.
      calendar_(ShopCalendar::Of(options).value_or(ShopCalendar())),
      item_series_(1),
      category_series_(1),
      item_fits_(1),
      category_fits_(1),
      item_category_(1),
      item_price_(1) {}

bool ForecastModel::Apply(const Event& event) {
  position_ = event.sequence;
  bool changed = false;
  const int64_t day = calendar_.Day(event.shop_time_ms);
  if (!started_ || day > today_) {
    Advance(day);
    changed = true;
  }
  switch (event.type) {
    case EventType::kPurchase:
    case EventType::kRefund: {
      if (event.item_id.empty()) return changed;
      const double quantity = event.quantity > 0 ? event.quantity : 1;
      AddDemand(event, event.type == EventType::kPurchase ? quantity : -quantity);
      return true;
    }
    case EventType::kItemUpdate: {
      const std::vector<std::string> path = CategoryPath(event);
      const uint32_t item = ItemRow(event.item_id);
      if (event.unit_price > 0) *item_price_.MutableRow(item) = event.unit_price;
      *item_category_.MutableRow(item) =
          path.empty() || path.back().empty() ? 0 : CategoryRow(path.back()) + 1;
      return true;
    }
    default:
      return changed;
  }
}

void ForecastModel::Advance(int64_t day) {
  if (started_) {
    days_since_fit_ += static_cast<uint64_t>(day - today_);
    Settle(day - options_.late_days);
  }
  settled_ = started_ ? std::max(settled_, day - options_.late_days) : day - options_.late_days;
  started_ = true;
  today_ = day;
  closed_ = ClosedFrom(shop_.get(), today_);
  const bool enough = shop_ && today_ - shop_->first_day >= kFitDays;
  if (!fit_.running() && FitDue(options_.fit_every_days, {days_since_fit_, fits_ > 0, enough})) {
    StartFit();
  }
}

void ForecastModel::Settle(int64_t to) {
  const auto settle = [&](RowBlockMatrix<std::shared_ptr<const DemandHistory>>& series,
                          RowBlockMatrix<SeriesFit>& fits, bool score) {
    for (size_t r = 0; r < fits.rows(); ++r) {
      if (!fits.Row(r)->errors) continue;
      SeriesFit& f = *fits.MutableRow(r);
      const DemandHistory* h = series.Row(r)->get();
      for (int64_t d = settled_; d < to; ++d) {
        const int wd = Weekday(d);
        const double y = DayValue(h, d);
        const int64_t slots = static_cast<int64_t>(served_.size());
        ServedErrors& e = served_[static_cast<size_t>(((d % slots) + slots) % slots)];
        if (e.day != d) e = {d};
        if (score && !closed_[wd] && f.scale > 1e-6) {
          e.abs1 += std::abs(y - f.state.Ahead(1, wd, closed_)) / f.scale, ++e.n1;
          if (!std::isnan(f.week_ahead[wd])) e.abs7 += std::abs(y - f.week_ahead[wd]) / f.scale, ++e.n7;
        }
        f.week_ahead[(wd + 6) % kWeek] = f.state.Ahead(kWeek, wd, closed_);
        StepFit(f, y, wd, closed_);
      }
    }
  };
  settle(item_series_, item_fits_, true);
  settle(category_series_, category_fits_, false);
  for (RowBlockMatrix<std::shared_ptr<const DemandHistory>>* series : {&item_series_, &category_series_}) {
    for (size_t r = 0; r < series->rows(); ++r) {
      const DemandHistory* h = series->Row(r)->get();
      if (h && !h->recent.empty() && h->first_day + static_cast<int64_t>(h->settled_days()) < to) {
        SettleHistory(*series->MutableRow(r), to);
      }
    }
  }
  SettleHistory(shop_, to);
  settled_ = std::max(settled_, to);
}

uint32_t ForecastModel::ItemRow(std::string_view item_id) {
  const uint32_t item = items_.FindOrAdd(item_id);
  item_series_.Resize(items_.size());
  item_fits_.Resize(items_.size());
  item_category_.Resize(items_.size());
  item_price_.Resize(items_.size());
  return item;
}

uint32_t ForecastModel::CategoryRow(std::string_view category) {
  const uint32_t row = categories_.FindOrAdd(category);
  category_series_.Resize(categories_.size());
  category_fits_.Resize(categories_.size());
  return row;
}

void ForecastModel::AddTo(DemandHistory& h, int64_t day, double quantity) const {
  if (h.size() == 0) h.first_day = day;
  if (day < h.first_day) {  // only while nothing is settled: settled days precede every open one
    h.recent.insert(h.recent.begin(), static_cast<size_t>(h.first_day - day), 0.0);
    h.first_day = day;
  }
  const int64_t at = day - h.first_day - static_cast<int64_t>(h.settled_days());
  if (at < 0) return;  // a settled day: AddDemand let no such event through
  if (at >= static_cast<int64_t>(h.recent.size())) h.recent.resize(static_cast<size_t>(at) + 1, 0.0);
  h.recent[static_cast<size_t>(at)] += quantity;
}

void ForecastModel::SettleHistory(std::shared_ptr<const DemandHistory>& slot, int64_t to) const {
  if (!slot) return;
  const int64_t settled_end = slot->first_day + static_cast<int64_t>(slot->settled_days());
  if (slot->size() == 0 || to <= settled_end) return;
  DemandHistory& h = Own(slot);
  // The recent days before `to`, then zeros for the days after them.
  const size_t move = std::min(static_cast<size_t>(to - settled_end), h.recent.size());
  std::vector<double> settled = h.settled ? *h.settled : std::vector<double>{};
  settled.insert(settled.end(), h.recent.begin(), h.recent.begin() + static_cast<std::ptrdiff_t>(move));
  settled.resize(static_cast<size_t>(to - h.first_day), 0.0);
  h.recent.erase(h.recent.begin(), h.recent.begin() + static_cast<std::ptrdiff_t>(move));
  const size_t keep = static_cast<size_t>(std::max(1, options_.history_days));
  if (settled.size() + h.recent.size() > keep) {
    const size_t drop = std::min(settled.size(), settled.size() + h.recent.size() - keep);
    settled.erase(settled.begin(), settled.begin() + static_cast<std::ptrdiff_t>(drop));
    h.first_day += static_cast<int64_t>(drop);
  }
  h.settled = std::make_shared<const std::vector<double>>(std::move(settled));
}

void ForecastModel::AddDemand(const Event& event, double quantity) {
  const int64_t day = calendar_.Day(event.timestamp_ms);
  if (day < today_ - options_.late_days) {
    ++late_events_;  // past the window of days that may still change
    return;
  }
  const uint32_t item = ItemRow(event.item_id);
  if (event.type == EventType::kPurchase && event.unit_price > 0) {
    *item_price_.MutableRow(item) = event.unit_price;
  }
  // A series that sold nothing since its last settled day settles now, so
  // that its recent days stay within the late window.
  const auto add = [&](std::shared_ptr<const DemandHistory>& slot) {
    SettleHistory(slot, settled_);
    AddTo(Own(slot), day, quantity);
  };
  add(*item_series_.MutableRow(item));
  if (const uint32_t category = *item_category_.Row(item); category > 0) {
    add(*category_series_.MutableRow(category - 1));
  }
  add(shop_);
}

void ForecastModel::StartFit() {
  days_since_fit_ = 0;
  struct Input {
    RowBlockView<std::shared_ptr<const DemandHistory>> items, categories;
    int64_t today, settled;
    ClosedWeekdays closed;
    ForecastOptions options;
  };
  Input in{item_series_.Freeze(), category_series_.Freeze(), today_, settled_, closed_, options_};
  fit_.Start(position_, options_.adopt_after_events, options_.background,
             [in = std::move(in)](const std::atomic<bool>& stop) -> std::optional<Fitted> {
               const absl::Time start = absl::Now();
               const auto fit_all = [&](const RowBlockView<std::shared_ptr<const DemandHistory>>& rows,
                                        std::vector<std::optional<SeriesFit>>& out) {
                 out.resize(rows.rows());
                 for (size_t r = 0; r < rows.rows(); ++r) {
                   if (stop.load(std::memory_order_relaxed)) return false;
                   const std::shared_ptr<const DemandHistory>& h = *rows.Row(r);
                   if (!h) continue;
                   const std::vector<double> y = ClosedDays(*h, in.today);
                   if (y.size() < static_cast<size_t>(kFitDays)) continue;
                   const DemandSeries s{y, h->first_day, in.closed};
                   out[r] = FitFrom(ChooseDemandMethod(s, in.options.backtest_window_days,
                                                       in.options.backtest_horizon_days),
                                    s, in.settled);
                 }
                 return true;
               };
               Fitted fitted;
               fitted.settled = in.settled;
               if (!fit_all(in.items, fitted.items) || !fit_all(in.categories, fitted.categories)) {
                 return std::nullopt;
               }
               const absl::Time end = absl::Now();
               fitted.run = {absl::ToUnixMillis(end), absl::ToDoubleSeconds(end - start)};
               return fitted;
             });
}

void ForecastModel::Adopt(Fitted fitted) {
  fitted_series_ = 0;
  // Each state caught up with the days settled since the fit started; the
  // forecasts already made 7 days ahead stay to be scored.
  const auto apply = [&](std::vector<std::optional<SeriesFit>>& fits,
                         const RowBlockMatrix<std::shared_ptr<const DemandHistory>>& series,
                         RowBlockMatrix<SeriesFit>& rows) {
    for (size_t r = 0; r < fits.size(); ++r) {
      if (!fits[r]) continue;
      StepFitDays(*fits[r], series.Row(r)->get(), fitted.settled, settled_, closed_);
      SeriesFit& row = *rows.MutableRow(r);
      if (row.errors) fits[r]->week_ahead = row.week_ahead;
      row = std::move(*fits[r]);
      ++fitted_series_;
    }
  };
  apply(fitted.items, item_series_, item_fits_);
  apply(fitted.categories, category_series_, category_fits_);
  ++fits_;
  last_fit_ = fitted.run;
}

FitGate ForecastModel::Gate(uint64_t sequence) {
  return fit_.Gate(sequence, [this](Fitted fitted) { Adopt(std::move(fitted)); });
}

void ForecastModel::Retrain() {
  if (!fit_.running()) StartFit();
}

std::shared_ptr<const ModelView> ForecastModel::Publish() {
  auto view = std::make_shared<ForecastView>();
  view->options_ = options_;
  view->items_ = items_.Freeze();
  view->categories_ = categories_.Freeze();
  view->item_series_ = item_series_.Freeze();
  view->category_series_ = category_series_.Freeze();
  view->item_fits_ = item_fits_.Freeze();
  view->category_fits_ = category_fits_.Freeze();
  view->item_category_ = item_category_.Freeze();
  view->item_price_ = item_price_.Freeze();
  view->shop_ = shop_;
  view->closed_ = closed_;
  view->started_ = started_;
  view->today_ = today_;
  view->settled_ = settled_;
  view->served_ = served_;
  view->late_events_ = late_events_;
  view->fits_ = fits_;
  view->days_since_fit_ = days_since_fit_;
  view->fitted_series_ = fitted_series_;
  view->last_fit_ = last_fit_;
  view->running_ = fit_.status();
  return view;
}

std::vector<std::pair<std::string, uint64_t>> ForecastView::Counts() const {
  std::vector<std::pair<std::string, uint64_t>> out = {
      {"items", items_.size()},       {"categories", categories_.size()},
      {"fits", fits_},                {"fitted_series", fitted_series_},
      {"late_events", late_events_},  {"days_since_fit", days_since_fit_}};
  std::array<uint64_t, kNumDemandMethods> by_method{};
  for (size_t r = 0; r < item_fits_.rows(); ++r) {
    const std::shared_ptr<const DemandHistory>& h = *item_series_.Row(r);
    if (h) ++by_method[static_cast<int>(item_fits_.Row(r)->state.fit().method)];
  }
  for (int m = 0; m < kNumDemandMethods; ++m) {
    out.emplace_back(absl::StrCat("items_", std::string(DemandMethodName(static_cast<DemandMethod>(m)))),
                     by_method[m]);
  }
  return out;
}

std::vector<std::pair<std::string, double>> ForecastView::Gauges() const {
  ServedErrors sum;
  for (const ServedErrors& e : served_) {
    if (e.day < settled_ - static_cast<int64_t>(served_.size())) continue;  // older than the window
    sum.abs1 += e.abs1, sum.n1 += e.n1, sum.abs7 += e.abs7, sum.n7 += e.n7;
  }
  std::vector<std::pair<std::string, double>> out;
  if (sum.n1 > 0) out.emplace_back("served_mase_1d", sum.abs1 / sum.n1);
  if (sum.n7 > 0) out.emplace_back("served_mase_7d", sum.abs7 / sum.n7);
  return out;
}

ForecastView::Basis ForecastView::BasisFor(const DemandSeries& s, const SeriesFit* fit) const {
  Basis b;
  if (fit && fit->errors) {
    b.state = fit->state;
    const int64_t from = std::max(settled_, s.first_day);
    for (int64_t d = from; d < today_; ++d) {
      b.state.Step(s.y[static_cast<size_t>(d - s.first_day)], Weekday(d), closed_);
    }
    b.errors = fit->errors;
    if (fit->typical_error > 0) b.spread = std::clamp(fit->recent_error / fit->typical_error, 0.5, 3.0);
    b.mase = fit->mase;
    b.naive_mase = fit->naive_mase;
    return b;
  }
  const DemandBacktest bt = Backtest({}, s, options_.backtest_window_days, options_.backtest_horizon_days);
  b.state = DemandState({}, s);
  b.state.StepAll(s.y, Weekday(s.first_day), s.closed);
  b.errors = std::make_shared<const ErrorProfiles>(ProfilesOf(bt));
  b.mase = b.naive_mase = bt.mase;
  return b;
}

absl::Status ForecastView::ClosedSales(const DemandHistory* h, std::string_view what,
                                       std::vector<double>* y) const {
  if (h) *y = ClosedDays(*h, today_);
  if (std::none_of(y->begin(), y->end(), [](double v) { return v > 0; })) {
    return absl::FailedPreconditionError(
        absl::StrCat(std::string(what), ": no closed day of sales history yet"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ForecastAnswer> ForecastView::ForecastSeries(const DemandHistory* history,
                                                            const SeriesFit* fit,
                                                            const ForecastQuery& q,
                                                            std::string_view what) const {
  std::vector<double> y;
  if (absl::Status st = ClosedSales(history, what, &y); !st.ok()) return st;
  const DemandSeries s{y, history->first_day, closed_};
  const Basis b = BasisFor(s, fit);
  std::vector<double> mean(static_cast<size_t>(q.horizon_days));
  b.state.Path(Weekday(today_), closed_, mean);
  ForecastAnswer a;
  a.forecast = WithIntervals(std::move(mean), *b.errors, b.spread, closed_, Weekday(today_), q.levels);
  a.method = std::string(DemandMethodName(b.state.fit().method));
  a.mase = b.mase;
  a.naive_mase = b.naive_mase;
  a.history_days = static_cast<int>(y.size());
  a.first_day = today_;
  a.history.assign(y.end() - std::min<ptrdiff_t>(q.history_days, static_cast<ptrdiff_t>(y.size())),
                   y.end());
  return a;
}

absl::StatusOr<ForecastAnswer> ForecastView::Forecast(const ForecastQuery& q) const {
  if (!q.category.empty()) {
    const std::optional<uint32_t> c = categories_.Find(q.category);
    if (!c) return absl::NotFoundError(absl::StrCat("category: no category '", q.category, "'"));
    return ForecastSeries(category_series_.Row(*c)->get(), category_fits_.Row(*c), q, "category");
  }
  const std::optional<uint32_t> i = items_.Find(q.item_id);
  if (!i) return absl::NotFoundError(absl::StrCat("item_id: no item '", q.item_id, "'"));
  const DemandHistory* own = item_series_.Row(*i)->get();
  absl::StatusOr<ForecastAnswer> a = ForecastSeries(own, item_fits_.Row(*i), q, "item_id");
  if (a.ok()) AtPrice(q, *i, *a);
  // Under a week of its own: its category's forecast, scaled to its share.
  const uint32_t category = *item_category_.Row(*i);
  if (!a.ok() || a->history_days >= kWeek || category == 0) return a;
  const DemandHistory* pool = category_series_.Row(category - 1)->get();
  absl::StatusOr<ForecastAnswer> c = ForecastSeries(pool, category_fits_.Row(category - 1), q, "category");
  if (!c.ok() || c->history_days < kFitDays) return a;
  const std::vector<double> mine = ClosedDays(*own, today_);
  const std::vector<double> theirs = ClosedDays(*pool, today_);
  double item_total = std::accumulate(mine.begin(), mine.end(), 0.0), pool_total = 0;
  for (size_t d = 0; d < mine.size(); ++d) pool_total += theirs[theirs.size() - mine.size() + d];
  if (pool_total <= 0) return a;
  const double share = item_total / pool_total;
  const auto scale = [&](std::vector<double>& v) {
    for (double& x : v) x *= share;
  };
  scale(c->forecast.mean);
  c->forecast.total *= share;
  for (DemandInterval& in : c->forecast.intervals) {
    scale(in.lower);
    scale(in.upper);
    in.total_lower *= share;
    in.total_upper *= share;
  }
  c->method = "category_profile";
  c->history_days = a->history_days;
  c->history = a->history;
  AtPrice(q, *i, *c);
  return c;
}

void ForecastView::AtPrice(const ForecastQuery& q, uint32_t item, ForecastAnswer& a) const {
  if (!q.planned_price) return;
  const double base = *item_price_.Row(item);
  if (base <= 0) {
    a.note = "no price seen for the item: the forecast is at its usual prices";
    return;
  }
  if (!q.response) {
    a.note = "no price elasticity for the item yet: the forecast is at its usual prices";
    return;
  }
  const PriceResponse& r = *q.response;
  const double ratio = *q.planned_price / base;
  const double at = std::pow(ratio, r.elasticity), lo = std::pow(ratio, r.ci_low),
               hi = std::pow(ratio, r.ci_high);
  const double low = std::min({at, lo, hi}), high = std::max({at, lo, hi});
  a.base_price = base;
  a.price_factor = at;
  a.price_outside_seen = *q.planned_price < r.min_price_seen || *q.planned_price > r.max_price_seen;
  for (double& x : a.forecast.mean) x *= at;
  a.forecast.total *= at;
  // The elasticity's own uncertainty widens the bounds.
  for (DemandInterval& in : a.forecast.intervals) {
    for (double& x : in.lower) x *= low;
    for (double& x : in.upper) x *= high;
    in.total_lower *= low;
    in.total_upper *= high;
  }
}

absl::StatusOr<InventoryAnswer> ForecastView::Plan(std::string_view item_id,
                                                   const InventoryRequest& request) const {
  const std::optional<uint32_t> i = items_.Find(item_id);
  if (!i) return absl::NotFoundError(absl::StrCat("item_id: no item '", std::string(item_id), "'"));
  const DemandHistory* h = item_series_.Row(*i)->get();
  std::vector<double> y;
  if (absl::Status st = ClosedSales(h, "item_id", &y); !st.ok()) return st;
  const Basis b = BasisFor({y, h->first_day, closed_}, item_fits_.Row(*i));
  std::vector<double> daily(static_cast<size_t>(InventoryHorizon(request)));
  b.state.Path(Weekday(today_), closed_, daily);
  InventoryAnswer a;
  a.plan = PlanInventory(daily, b.errors->cumulative, b.spread, request);
  a.method = std::string(DemandMethodName(b.state.fit().method));
  a.mase = b.mase;
  a.naive_mase = b.naive_mase;
  return a;
}

std::string ForecastView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormat);
  w.U8(started_);
  w.I64(today_);
  w.I64(settled_);
  for (uint64_t v : {late_events_, fits_, days_since_fit_, fitted_series_}) w.Varint(v);
  for (const ServedErrors& e : served_) EncodeServed(w, e);
  for (bool c : closed_) w.U8(c);
  w.Varint(items_.size());
  for (uint32_t i = 0; i < items_.size(); ++i) {
    w.Str(items_.Name(i));
    EncodeHistory(w, item_series_.Row(i)->get());
    EncodeFit(w, *item_fits_.Row(i));
    w.Varint(*item_category_.Row(i));
    w.F64(*item_price_.Row(i));
  }
  w.Varint(categories_.size());
  for (uint32_t c = 0; c < categories_.size(); ++c) {
    w.Str(categories_.Name(c));
    EncodeHistory(w, category_series_.Row(c)->get());
    EncodeFit(w, *category_fits_.Row(c));
  }
  EncodeHistory(w, shop_.get());
  return out;
}

absl::Status ForecastModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t format = r.U8();
  if (format == 1 || format == 2) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint of format ", format, "; rebuilt from the log"));
  }
  if (format != kFormat) return absl::DataLossError("forecast checkpoint: unknown format");
  ForecastModel next(options_);
  next.started_ = r.U8() != 0;
  next.today_ = r.I64();
  next.settled_ = r.I64();
  for (uint64_t* v : {&next.late_events_, &next.fits_, &next.days_since_fit_, &next.fitted_series_}) {
    *v = r.Varint();
  }
  for (ServedErrors& e : next.served_) e = DecodeServed(r);
  for (bool& c : next.closed_) c = r.U8() != 0;
  const uint64_t items = r.Varint();
  std::vector<uint32_t> categories_of;
  for (uint64_t i = 0; i < items && r.status().ok(); ++i) {
    const uint32_t row = next.ItemRow(r.Str());
    *next.item_series_.MutableRow(row) = DecodeHistory(r, options_.history_days);
    *next.item_fits_.MutableRow(row) = DecodeFit(r);
    categories_of.push_back(static_cast<uint32_t>(r.Varint()));
    *next.item_category_.MutableRow(row) = categories_of.back();
    *next.item_price_.MutableRow(row) = r.F64();
  }
  const uint64_t categories = r.Varint();
  for (uint64_t c = 0; c < categories && r.status().ok(); ++c) {
    const uint32_t row = next.CategoryRow(r.Str());
    *next.category_series_.MutableRow(row) = DecodeHistory(r, options_.history_days);
    *next.category_fits_.MutableRow(row) = DecodeFit(r);
  }
  for (uint32_t c : categories_of) {
    if (c > next.categories_.size()) r.Invalidate();
  }
  next.shop_ = DecodeHistory(r, options_.history_days);
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("forecast checkpoint: trailing bytes");
  *this = std::move(next);
  return absl::OkStatus();
}

}  // namespace mercato::core
