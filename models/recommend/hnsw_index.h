// Approximate maximum-inner-product search over item factors: a wrapper of
// Debian's header-only hnswlib, in an inner-product space over vectors
// quantised to int8 (one scale per vector). Labels are item rows.
//
// An index is built on one thread (Upsert) and then never changes: every
// published view that holds it may search it from any thread (Search, size,
// Encode are const and need no lock). Results are candidates ranked by the
// quantised product only: callers re-score them with their own snapshot's
// factors. Checkpoints hold the index too (Encode / Decode), so a restarted
// server searches the graph it had instead of rebuilding one.
#ifndef MERCATO_MODELS_RECOMMEND_HNSW_INDEX_H_
#define MERCATO_MODELS_RECOMMEND_HNSW_INDEX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hnswlib {
template <typename T>
class HierarchicalNSW;
}  // namespace hnswlib

namespace mercato::core {

class QuantizedInnerProductSpace;

struct HnswOptions {
  int m = 16;
  int ef_construction = 200;
  int ef_search = 32;
};

class HnswIndex {
 public:
  // Room for `capacity` rows before the index has to grow.
  HnswIndex(int dim, const HnswOptions& options, size_t capacity = 1024);
  ~HnswIndex();
  HnswIndex(const HnswIndex&) = delete;
  HnswIndex& operator=(const HnswIndex&) = delete;

  // Adds row `label` with vector `v` (dim floats), or replaces its vector.
  // Only while the index is being built, before anything searches it.
  void Upsert(uint32_t label, const float* v);
  // The max(breadth, k) labels found with the largest (quantised) inner
  // product with `query`, best first; breadth 0 = options.ef_search.
  std::vector<uint32_t> Search(const float* query, size_t k, int breadth = 0) const;
  size_t size() const;

  // The graph and vectors as bytes (hnswlib's own format).
  std::string Encode() const;
  // The index Encode() wrote. DATA_LOSS when `bytes` is not an index of
  // `dim`-dimensional vectors with `options.m` links a node whose links stay
  // in bounds, or asks for room for more than about 4x `expected_rows`.
  // Labels are not checked: callers bound-check the rows Search() returns.
  static absl::StatusOr<std::unique_ptr<HnswIndex>> Decode(int dim, const HnswOptions& options,
                                                           std::string_view bytes,
                                                           size_t expected_rows);

 private:
  std::unique_ptr<QuantizedInnerProductSpace> space_;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> index_;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_HNSW_INDEX_H_
