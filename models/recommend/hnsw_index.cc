#include "models/recommend/hnsw_index.h"

#include <hnswlib/hnswlib.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <queue>
#include <stdexcept>

#include "absl/strings/str_cat.h"

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

// An anonymous in-memory file: hnswlib saves and loads indexes by file name
// only, and /proc/self/fd/N names this one.
class MemoryFile {
 public:
  MemoryFile() : fd_(memfd_create("mercato-hnsw", MFD_CLOEXEC)) {}
  ~MemoryFile() {
    if (fd_ >= 0) close(fd_);
  }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;

  bool ok() const { return fd_ >= 0; }
  std::string path() const { return absl::StrCat("/proc/self/fd/", fd_); }

  bool Write(std::string_view bytes) {
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n = pwrite(fd_, bytes.data() + done, bytes.size() - done, done);
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }
  bool Read(std::string* out) const {
    struct stat st;
    if (fstat(fd_, &st) != 0) return false;
    out->resize(st.st_size);
    for (size_t done = 0; done < out->size();) {
      const ssize_t n = pread(fd_, out->data() + done, out->size() - done, done);
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }

 private:
  int fd_;
};

// The fixed-size header hnswlib's saveIndex writes first, field by field.
struct SavedHeader {
  size_t level0_offset, capacity, count, bytes_per_node, label_offset, data_offset;
  int max_level;
  hnswlib::tableint entry;
  size_t max_m, max_m0, m;
  double level_mult;
  size_t ef_construction;
};

// Reads and checks the header of a saved index of `data_size`-byte vectors
// and `m` links a node, with room for at most about 4x `expected_rows`:
// every offset that loading follows must be the one such an index has.
absl::Status CheckSavedHeader(std::string_view bytes, size_t data_size, size_t m,
                              size_t expected_rows) {
  SavedHeader h;
  size_t pos = 0;
  bool short_input = false;
  const auto read = [&](auto& field) {
    if (pos + sizeof(field) > bytes.size()) {
      short_input = true;
      return;
    }
    std::memcpy(&field, bytes.data() + pos, sizeof(field));
    pos += sizeof(field);
  };
  for (size_t* field : {&h.level0_offset, &h.capacity, &h.count, &h.bytes_per_node,
                        &h.label_offset, &h.data_offset}) {
    read(*field);
  }
  read(h.max_level);
  read(h.entry);
  for (size_t* field : {&h.max_m, &h.max_m0, &h.m}) read(*field);
  read(h.level_mult);
  read(h.ef_construction);
  if (short_input) return absl::DataLossError("HNSW index: truncated header");
  const size_t links0 = 2 * m * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
  if (h.m != m || h.max_m != m || h.max_m0 != 2 * m || h.level0_offset != 0 ||
      h.data_offset != links0 || h.label_offset != links0 + data_size ||
      h.bytes_per_node != h.label_offset + sizeof(hnswlib::labeltype) ||
      h.level_mult != 1 / std::log(1.0 * m) || h.ef_construction == 0 ||
      h.ef_construction > 100000) {
    return absl::DataLossError(
        absl::StrCat("HNSW index: not one of ", data_size, "-byte vectors with ", m, " links a node"));
  }
  if (h.count > h.capacity || h.capacity > 4 * expected_rows + 1024 ||
      (h.count > 0 && (h.entry >= h.count || h.max_level < 0)) ||
      h.count * h.bytes_per_node > bytes.size() - pos) {
    return absl::DataLossError(absl::StrCat("HNSW index: ", h.count, " nodes, capacity ",
                                            h.capacity, ", in ", bytes.size(), " bytes"));
  }
  return absl::OkStatus();
}

// Whether every link and level of a loaded index stays in bounds, so that
// searches and upserts read only its own memory.
bool LinksInBounds(const hnswlib::HierarchicalNSW<float>& g) {
  using hnswlib::linklistsizeint, hnswlib::tableint;
  const size_t n = g.cur_element_count;
  const auto links_ok = [&](const linklistsizeint* list, size_t most) {
    const size_t count = g.getListCount(const_cast<linklistsizeint*>(list));
    const auto* links = reinterpret_cast<const tableint*>(list + 1);
    return count <= most && std::all_of(links, links + count, [&](tableint l) { return l < n; });
  };
  for (tableint i = 0; i < n; ++i) {
    if (g.element_levels_[i] > g.maxlevel_ ||
        !links_ok(g.get_linklist0(i), g.maxM0_)) {
      return false;
    }
    for (int level = 1; level <= g.element_levels_[i]; ++level) {
      if (!links_ok(g.get_linklist(i, level), g.maxM_)) return false;
    }
  }
  return n == 0 || g.element_levels_[g.enterpoint_node_] == g.maxlevel_;
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
  if (index_->cur_element_count >= index_->max_elements_) {
    index_->resizeIndex(2 * index_->max_elements_);
    AdviseHugePages(index_->data_level0_memory_,
                    index_->max_elements_ * index_->size_data_per_element_);
  }
  index_->addPoint(q.data(), label);
}

std::vector<uint32_t> HnswIndex::Search(const float* query, size_t k, int breadth) const {
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

  const hnswlib::HierarchicalNSW<float>& g = *index_;
  if (g.cur_element_count == 0) return {};
  const size_t ef = std::max(k, breadth > 0 ? static_cast<size_t>(breadth) : g.ef_);
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

std::string HnswIndex::Encode() const {
  MemoryFile file;
  std::string out;
  if (!file.ok()) return out;
  index_->saveIndex(file.path());
  if (!file.Read(&out)) out.clear();
  return out;
}

absl::StatusOr<std::unique_ptr<HnswIndex>> HnswIndex::Decode(int dim, const HnswOptions& options,
                                                             std::string_view bytes,
                                                             size_t expected_rows) {
  auto index = std::make_unique<HnswIndex>(dim, options);
  if (absl::Status s = CheckSavedHeader(bytes, index->space_->get_data_size(), options.m,
                                        expected_rows);
      !s.ok()) {
    return s;
  }
  MemoryFile file;
  if (!file.ok() || !file.Write(bytes)) {
    return absl::ResourceExhaustedError("HNSW index: cannot stage the checkpointed index in memory");
  }
  try {
    index->index_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(index->space_.get(),
                                                                      file.path());
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("HNSW index: ", e.what()));
  }
  hnswlib::HierarchicalNSW<float>& g = *index->index_;
  if (!LinksInBounds(g)) {
    return absl::DataLossError("HNSW index: links or levels out of bounds");
  }
  g.setEf(options.ef_search);
  // Loading wrote the nodes before huge pages could be asked for: move them
  // to memory that has them from the start.
  const size_t level0_bytes = g.max_elements_ * g.size_data_per_element_;
  char* level0 = static_cast<char*>(std::malloc(level0_bytes));
  if (level0 == nullptr) return absl::ResourceExhaustedError("HNSW index: out of memory");
  AdviseHugePages(level0, level0_bytes);
  std::memcpy(level0, g.data_level0_memory_, g.cur_element_count * g.size_data_per_element_);
  std::free(g.data_level0_memory_);
  g.data_level0_memory_ = level0;
  return index;
}

size_t HnswIndex::size() const {
  return index_->cur_element_count;
}

}  // namespace mercato::core
