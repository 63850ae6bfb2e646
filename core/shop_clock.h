// Shop time: the time of the shop's own events, never the wall clock. The
// learner keeps the one ShopClock and stamps every event with it before any
// model sees the event (Event::shop_time_ms), so that every model agrees on
// it and no model filters the server's own records itself.
#ifndef MERCATO_CORE_SHOP_CLOCK_H_
#define MERCATO_CORE_SHOP_CLOCK_H_

#include <algorithm>
#include <cstdint>

#include "core/event.h"

namespace mercato::core {

// Not thread-safe: owned by the thread that applies events.
class ShopClock {
 public:
  // Advances shop time to `event`'s timestamp when it carries shop time and
  // is later, then sets event.shop_time_ms.
  void Stamp(Event& event) {
    if (CarriesShopTime(event.type)) now_ms_ = std::max(now_ms_, event.timestamp_ms);
    event.shop_time_ms = now_ms_;
  }
  int64_t now_ms() const { return now_ms_; }
  void Reset(int64_t now_ms) { now_ms_ = now_ms; }

 private:
  int64_t now_ms_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_SHOP_CLOCK_H_
