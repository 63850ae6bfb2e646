#include "storage/log_writer.h"

#include <atomic>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/clock.h"
#include "storage/codec.h"

namespace mercato::storage {
namespace {

// Time, a per-process nonce and a counter: ids that no other call of this
// process, nor a replica's at the same microsecond, repeats.
std::string UniqueSuffix() {
  static const uint64_t nonce = std::random_device{}() * 0x100000000ULL ^ std::random_device{}();
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(absl::ToUnixMicros(absl::Now()), "-", absl::Hex(nonce), "-", counter++);
}

}  // namespace

CatalogUpsert ItemUpserts(const std::vector<core::Item>& items) {
  const int64_t now_ms = core::Clock::Real()->NowMs();
  CatalogUpsert upsert;
  upsert.events.reserve(items.size());
  upsert.rows.reserve(items.size());
  for (const core::Item& item : items) {
    upsert.events.push_back(core::ItemUpdateEvent(
        item, now_ms, absl::StrCat("catalog/", item.item_id, "/", UniqueSuffix())));
    upsert.rows.push_back(EncodeItem(item));
  }
  return upsert;
}

core::Event ItemDeleteEvent(std::string_view item_id) {
  core::Event event;
  event.type = core::EventType::kItemDelete;
  event.item_id = std::string(item_id);
  event.timestamp_ms = core::Clock::Real()->NowMs();
  event.event_id = absl::StrCat("catalog-delete/", event.item_id, "/", UniqueSuffix());
  return event;
}

}  // namespace mercato::storage
