// mercato-recall-bench: HNSW recall@k against the exact scan, and the time of
// each, on factors trained from a planted-taste catalogue
// (core::PlantedTasteEvents), in process.
//
//   ./build/mercato-recall-bench --items=1000000 --ef=50,100,200
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/command_line.h"
#include "testing/demo_shop.h"
#include "models/recommend/recommend_model.h"

ABSL_FLAG(int, items, 100000, "catalogue size");
ABSL_FLAG(int, tastes, 64, "planted taste clusters");
ABSL_FLAG(int, queries, 1000, "users queried");
ABSL_FLAG(int, k, 10, "recall@k");
ABSL_FLAG(std::string, ef, "50,100,200", "HNSW search breadths to measure");
ABSL_FLAG(int, m, 16, "HNSW links per node");
ABSL_FLAG(int, ef_construction, 200, "HNSW build breadth");

namespace mercato::core {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

int Main() {
  const int items = absl::GetFlag(FLAGS_items);
  const int k = absl::GetFlag(FLAGS_k);
  auto start = std::chrono::steady_clock::now();
  const std::vector<Event> events =
      PlantedTasteEvents(items, absl::GetFlag(FLAGS_tastes), 1'700'000'000'000);
  std::vector<int> efs;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_ef), ',')) {
    int ef = 0;
    if (absl::SimpleAtoi(s, &ef) && ef > 0) efs.push_back(ef);
  }
  std::printf("machine: %u cores; %d items, %zu events, k=%d, M=%d, ef_construction=%d\n",
              std::thread::hardware_concurrency(), items, events.size(), k, absl::GetFlag(FLAGS_m),
              absl::GetFlag(FLAGS_ef_construction));
  RecommendOptions options;
  options.hnsw_min_items = 1;
  options.hnsw.m = absl::GetFlag(FLAGS_m);
  options.hnsw.ef_construction = absl::GetFlag(FLAGS_ef_construction);
  options.background = false;
  RecommendModel model(options);
  start = std::chrono::steady_clock::now();
  for (const Event& e : events) model.Apply(e);
  const double applied = Seconds(start);
  start = std::chrono::steady_clock::now();
  model.RetrainNow();
  std::printf("events applied in %.1f s; retrain (%d epochs) and HNSW build in %.1f s\n", applied,
              options.ials.epochs, Seconds(start));
  auto view = std::dynamic_pointer_cast<const RecommendView>(model.Publish());
  const int users = std::max(1, items / 4);
  for (int ef : efs) {
    // Exact answers first, then every HNSW query in a row, as a server
    // answers them (the exact scans would otherwise evict the index from the
    // caches before each HNSW query).
    std::vector<const float*> queries;
    std::vector<std::vector<uint32_t>> exact;
    std::vector<double> exact_us, hnsw_us, search_us;
    for (int q = 0; q < absl::GetFlag(FLAGS_queries); ++q) {
      const float* user = view->UserFactors("cu" + std::to_string(q * 7919 % users));
      if (!user) continue;
      queries.push_back(user);
      start = std::chrono::steady_clock::now();
      exact.push_back(view->TopItems(user, k, true));
      exact_us.push_back(1e6 * Seconds(start));
    }
    double hits = 0, total = 0;
    for (size_t q = 0; q < queries.size(); ++q) {
      start = std::chrono::steady_clock::now();
      const std::vector<uint32_t> approx = view->TopItems(queries[q], k, false, ef);
      hnsw_us.push_back(1e6 * Seconds(start));
      for (uint32_t i : approx) hits += std::count(exact[q].begin(), exact[q].end(), i);
      total += static_cast<double>(exact[q].size());
    }
    for (const float* user : queries) {
      start = std::chrono::steady_clock::now();
      view->index().index->Search(user, k, ef);
      search_us.push_back(1e6 * Seconds(start));
    }
    std::printf(
        "ef=%d: recall@%d %.4f over %zu users; exact scan p50 %.0f us p99 %.0f us; "
        "HNSW p50 %.0f us p99 %.0f us (the index search alone: p50 %.0f us)\n",
        ef, k, total > 0 ? hits / total : 0, exact_us.size(), Percentile(exact_us, 0.5),
        Percentile(exact_us, 0.99), Percentile(hnsw_us, 0.5), Percentile(hnsw_us, 0.99),
        Percentile(search_us, 0.5));
  }
  return 0;
}

}  // namespace
}  // namespace mercato::core

int main(int argc, char** argv) {
  mercato::core::ParseCommandLine(argc, argv,
                                  "HNSW recall and search time against "
                                  "the exact scan");
  return mercato::core::Main();
}
