#include "core/hnsw_index.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <mutex>

namespace mercato::core {

HnswIndex::HnswIndex(int dim, const HnswOptions& options, size_t capacity)
    : space_(std::make_unique<hnswlib::InnerProductSpace>(dim)),
      index_(std::make_unique<hnswlib::HierarchicalNSW<float>>(
          space_.get(), std::max<size_t>(capacity, 16), options.m, options.ef_construction)) {
  index_->setEf(options.ef_search);
}

HnswIndex::~HnswIndex() = default;

void HnswIndex::Upsert(uint32_t label, const float* v) {
  std::unique_lock lock(mu_);
  if (index_->cur_element_count >= index_->max_elements_) {
    index_->resizeIndex(2 * index_->max_elements_);
  }
  index_->addPoint(v, label);
}

std::vector<uint32_t> HnswIndex::Search(const float* query, size_t k) const {
  std::shared_lock lock(mu_);
  auto found = index_->searchKnn(query, k);
  std::vector<uint32_t> out(found.size());
  for (size_t i = out.size(); i-- > 0; found.pop()) out[i] = static_cast<uint32_t>(found.top().second);
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
