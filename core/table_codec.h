// The checkpoint layout shared by models that keep rows keyed by an id
// dictionary: varint n, then n × (id str, [row as raw f64 × cols]).
#ifndef MERCATO_CORE_TABLE_CODEC_H_
#define MERCATO_CORE_TABLE_CODEC_H_

#include "core/bytes.h"
#include "core/id_dictionary.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

// `rows` may be null for a dictionary alone.
inline void EncodeTable(ByteWriter& w, const IdDictionaryView& keys,
                        const RowBlockView<double>* rows) {
  w.Varint(keys.size());
  for (uint32_t i = 0; i < keys.size(); ++i) {
    w.Str(keys.Name(i));
    if (rows) w.Raw(rows->Row(i), sizeof(double) * rows->cols());
  }
}

// Adds the encoded ids (and rows) to `keys` (and `rows`). Errors stay in `r`.
inline void DecodeTable(ByteReader& r, IdDictionary& keys, RowBlockMatrix<double>* rows) {
  const uint64_t n = r.Varint();
  for (uint64_t i = 0; i < n && r.status().ok(); ++i) {
    const uint32_t row = keys.FindOrAdd(r.Str());
    if (!rows) continue;
    rows->Resize(keys.size());
    r.Raw(rows->MutableRow(row), sizeof(double) * rows->cols());
  }
}

}  // namespace mercato::core

#endif  // MERCATO_CORE_TABLE_CODEC_H_
