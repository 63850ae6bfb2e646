#include "core/hnsw_index.h"

#include <hnswlib/hnswlib.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <queue>

namespace mercato::core {
namespace {

// Σ a_i b_i over `n` int8 coordinates.
int32_t DotInt8(const int8_t* a, const int8_t* b, size_t n) {
  size_t i = 0;
  int32_t sum = 0;
#ifdef __AVX2__
  __m256i acc = _mm256_setzero_si256();
  for (; i + 16 <= n; i += 16) {
    const __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i y = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_hadd_epi32(s, s);
  s = _mm_hadd_epi32(s, s);
  sum = _mm_cvtsi128_si32(s);
#endif
  for (; i < n; ++i) sum += int32_t{a[i]} * int32_t{b[i]};
  return sum;
}

// Asks for transparent huge pages over the 2 MiB-aligned part of
// [data, data + bytes), where the kernel grants them on request: a search
// jumps across the whole index, and with 4 KiB pages nearly every hop would
// also miss the TLB.
void AdviseHugePages(const void* data, size_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

}  // namespace

// Inner-product space over quantised vectors: `dim` int8 coordinates, then
// the float that scales them back. A quarter of the float vector's bytes, so
// a search touches a quarter of the memory; the distance is hnswlib's
// 1 - <a, b>.
class QuantizedInnerProductSpace final : public hnswlib::SpaceInterface<float> {
 public:
  explicit QuantizedInnerProductSpace(size_t dim) : dim_(dim) {}
  size_t dim() const { return dim_; }
  size_t get_data_size() override { return dim_ + sizeof(float); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &Distance; }
  void* get_dist_func_param() override { return &dim_; }

  // Writes `v` quantised to `out` (get_data_size() bytes).
  void Quantize(const float* v, char* out) const {
    float peak = 0;
    for (size_t i = 0; i < dim_; ++i) peak = std::max(peak, std::abs(v[i]));
    const float scale = peak > 0 ? peak / 127.0f : 1.0f;
    for (size_t i = 0; i < dim_; ++i) {
      out[i] = static_cast<char>(static_cast<int8_t>(std::lround(v[i] / scale)));
    }
    std::memcpy(out + dim_, &scale, sizeof(float));
  }

  static float Distance(const void* a, const void* b, const void* param) {
    const size_t dim = *static_cast<const size_t*>(param);
    const auto* x = static_cast<const int8_t*>(a);
    const auto* y = static_cast<const int8_t*>(b);
    float sx, sy;
    std::memcpy(&sx, x + dim, sizeof(float));
    std::memcpy(&sy, y + dim, sizeof(float));
    return 1.0f - sx * sy * static_cast<float>(DotInt8(x, y, dim));
  }

 private:
  size_t dim_;
};

HnswIndex::HnswIndex(int dim, const HnswOptions& options, size_t capacity)
    : space_(std::make_unique<QuantizedInnerProductSpace>(dim)),
      index_(std::make_unique<hnswlib::HierarchicalNSW<float>>(
          space_.get(), std::max<size_t>(capacity, 16), options.m, options.ef_construction)) {
  index_->setEf(options.ef_search);
  AdviseHugePages(index_->data_level0_memory_, index_->max_elements_ * index_->size_data_per_element_);
}

HnswIndex::~HnswIndex() = default;

void HnswIndex::Upsert(uint32_t label, const float* v) {
  std::vector<char> q(space_->get_data_size());
  space_->Quantize(v, q.data());
  std::unique_lock lock(mu_);
  if (index_->cur_element_count >= index_->max_elements_) {
    index_->resizeIndex(2 * index_->max_elements_);
    AdviseHugePages(index_->data_level0_memory_,
                    index_->max_elements_ * index_->size_data_per_element_);
  }
  index_->addPoint(q.data(), label);
}

std::vector<uint32_t> HnswIndex::Search(const float* query, size_t k) const {
  using hnswlib::tableint;
  std::vector<char> quantized(space_->get_data_size());
  space_->Quantize(query, quantized.data());
  const size_t dim = space_->dim();
  const auto distance = [&](tableint node) {
    return QuantizedInnerProductSpace::Distance(quantized.data(), index_->getDataByInternalId(node),
                                                &dim);
  };
  const auto prefetch = [&](tableint node) {
    const char* data = index_->getDataByInternalId(node);
    __builtin_prefetch(data);
    __builtin_prefetch(data + 64);
  };

  std::shared_lock lock(mu_);
  const hnswlib::HierarchicalNSW<float>& g = *index_;
  if (g.cur_element_count == 0) return {};
  const size_t ef = std::max(k, g.ef_);
  // Greedy descent through the upper layers to the entry of layer 0.
  tableint entry = g.enterpoint_node_;
  float entry_distance = distance(entry);
  for (int level = g.maxlevel_; level > 0; --level) {
    for (bool moved = true; moved;) {
      moved = false;
      const hnswlib::linklistsizeint* list = g.get_linklist(entry, level);
      const auto* links = reinterpret_cast<const tableint*>(list + 1);
      const int n = g.getListCount(const_cast<hnswlib::linklistsizeint*>(list));
      for (int i = 0; i < n; ++i) prefetch(links[i]);
      for (int i = 0; i < n; ++i) {
        const float d = distance(links[i]);
        if (d < entry_distance) {
          entry_distance = d;
          entry = links[i];
          moved = true;
        }
      }
    }
  }

  // Best-first search of layer 0 keeping the `ef` nearest found. Each step
  // prefetches every unvisited neighbour before computing any distance, so
  // their cache misses overlap instead of following one another.
  using Entry = std::pair<float, tableint>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> frontier;  // nearest first
  std::priority_queue<Entry> nearest;                                      // farthest first
  hnswlib::VisitedList* visited = g.visited_list_pool_->getFreeVisitedList();
  const hnswlib::vl_type tag = visited->curV;
  visited->mass[entry] = tag;
  frontier.emplace(entry_distance, entry);
  nearest.emplace(entry_distance, entry);
  std::vector<tableint> fresh;
  while (!frontier.empty()) {
    const auto [d, node] = frontier.top();
    if (nearest.size() >= ef && d > nearest.top().first) break;
    frontier.pop();
    if (!frontier.empty()) {  // most likely the next node to expand
      const char* next_list = reinterpret_cast<const char*>(g.get_linklist0(frontier.top().second));
      for (size_t b = 0; b < g.size_links_level0_; b += 64) __builtin_prefetch(next_list + b);
    }
    const hnswlib::linklistsizeint* list = g.get_linklist0(node);
    const auto* links = reinterpret_cast<const tableint*>(list + 1);
    const int n = g.getListCount(const_cast<hnswlib::linklistsizeint*>(list));
    for (int i = 0; i < n; ++i) __builtin_prefetch(&visited->mass[links[i]]);
    fresh.clear();
    for (int i = 0; i < n; ++i) {
      if (visited->mass[links[i]] == tag) continue;
      visited->mass[links[i]] = tag;
      fresh.push_back(links[i]);
      prefetch(links[i]);
    }
    for (tableint next : fresh) {
      const float dn = distance(next);
      if (nearest.size() < ef || dn < nearest.top().first) {
        frontier.emplace(dn, next);
        nearest.emplace(dn, next);
        if (nearest.size() > ef) nearest.pop();
      }
    }
  }
  g.visited_list_pool_->releaseVisitedList(visited);

  std::vector<uint32_t> out(nearest.size());
  for (size_t i = out.size(); i-- > 0; nearest.pop()) {
    out[i] = static_cast<uint32_t>(g.getExternalLabel(nearest.top().second));
  }
  return out;
}

void HnswIndex::SetSearchBreadth(int ef) {
  std::unique_lock lock(mu_);
  index_->setEf(ef);
}

size_t HnswIndex::size() const {
  std::shared_lock lock(mu_);
  return index_->cur_element_count;
}

}  // namespace mercato::core
