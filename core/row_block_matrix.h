// Copy-on-write row-block matrix: the container for large per-user and
// per-item model rows. The learner owns one RowBlockMatrix and mutates it;
// Freeze() hands out an immutable RowBlockView that shares every block. A
// later write to a block that a view still holds copies that block first, so
// a publication costs one pointer per block plus the blocks that changed.
//
// Thread-safety: a RowBlockMatrix is used by one thread (the learner). A
// RowBlockView is immutable and safe to read from any number of threads.
#ifndef MERCATO_CORE_ROW_BLOCK_MATRIX_H_
#define MERCATO_CORE_ROW_BLOCK_MATRIX_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace mercato::core {

template <class T>
class RowBlockView {
 public:
  RowBlockView() = default;
  size_t rows() const { return rows_; }
  int cols() const { return cols_; }
  int rows_per_block() const { return rows_per_block_; }
  // REQUIRES: r < rows().
  const T* Row(size_t r) const {
    assert(r < rows_);
    return blocks_[r / rows_per_block_]->data() + (r % rows_per_block_) * cols_;
  }
  // The contiguous rows of block b (rows_per_block() rows, the last may be
  // partly beyond rows()).
  const T* BlockData(size_t b) const { return blocks_[b]->data(); }
  size_t num_blocks() const { return blocks_.size(); }

 private:
  template <class>
  friend class RowBlockMatrix;
  std::vector<std::shared_ptr<const std::vector<T>>> blocks_;
  size_t rows_ = 0;
  int cols_ = 0;
  int rows_per_block_ = 1;
};

template <class T>
class RowBlockMatrix {
 public:
  // REQUIRES: cols > 0, rows_per_block > 0.
  explicit RowBlockMatrix(int cols, int rows_per_block = 256)
      : cols_(cols), rows_per_block_(rows_per_block) {}

  size_t rows() const { return rows_; }
  int cols() const { return cols_; }

  // Grows to `rows` rows; new rows are zero. Never shrinks.
  void Resize(size_t rows) {
    if (rows <= rows_) return;
    size_t need = (rows + rows_per_block_ - 1) / rows_per_block_;
    while (blocks_.size() < need) {
      blocks_.push_back(std::make_shared<std::vector<T>>(
          static_cast<size_t>(rows_per_block_) * cols_, T{}));
    }
    rows_ = rows;
  }

  // REQUIRES: r < rows().
  const T* Row(size_t r) const {
    assert(r < rows_);
    return blocks_[r / rows_per_block_]->data() + (r % rows_per_block_) * cols_;
  }

  // REQUIRES: r < rows(). Copies the row's block first when a view shares it.
  T* MutableRow(size_t r) {
    assert(r < rows_);
    auto& block = blocks_[r / rows_per_block_];
    // use_count() > 1 means a view (or a stale copy) holds the block; a
    // spurious copy from a concurrent release is harmless.
    if (block.use_count() > 1) {
      block = std::make_shared<std::vector<T>>(*block);
      ++blocks_copied_;
    }
    return block->data() + (r % rows_per_block_) * cols_;
  }

  // An immutable view of the current contents; O(number of blocks).
  RowBlockView<T> Freeze() const {
    RowBlockView<T> view;
    view.blocks_.assign(blocks_.begin(), blocks_.end());
    view.rows_ = rows_;
    view.cols_ = cols_;
    view.rows_per_block_ = rows_per_block_;
    return view;
  }

  // Blocks copied because a view shared them, since construction.
  uint64_t blocks_copied() const { return blocks_copied_; }

 private:
  std::vector<std::shared_ptr<std::vector<T>>> blocks_;
  size_t rows_ = 0;
  int cols_;
  int rows_per_block_;
  uint64_t blocks_copied_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_ROW_BLOCK_MATRIX_H_
