#include "server/validation.h"

#include <gtest/gtest.h>

#include <cmath>

namespace mercato::server {
namespace {

v1::Event Good() {
  v1::Event e;
  e.set_event_id("e1");
  e.set_type(v1::PURCHASE);
  e.set_user_id("u1");
  e.set_item_id("i1");
  e.set_timestamp_ms(1700000000000);
  e.set_unit_price(9.99);
  return e;
}

TEST(ValidationTest, GoodEventConvertsAndPurchaseQuantityDefaultsToOne) {
  auto e = ToCoreEvent(Good(), "events[0]");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, core::EventType::kPurchase);
  EXPECT_EQ(e->quantity, 1);
  v1::Event back;
  ToProtoEvent(*e, &back);
  EXPECT_EQ(back.unit_price(), 9.99);
}

TEST(ValidationTest, EachBadFieldIsNamed) {
  struct Case {
    std::function<void(v1::Event&)> spoil;
    const char* prefix;
  };
  const std::vector<Case> cases = {
      {[](v1::Event& e) { e.set_event_id(std::string(129, 'x')); },
       "events[0].event_id: must be at most 128"},
      {[](v1::Event& e) { e.set_user_id(""); }, "events[0].user_id: is required"},
      {[](v1::Event& e) { e.set_item_id("\xc3\x28"); }, "events[0].item_id: must be valid UTF-8"},
      {[](v1::Event& e) { e.set_session_id("\xed\xa0\x80"); },
       "events[0].session_id: must be valid UTF-8"},
      {[](v1::Event& e) { (*e.mutable_attributes())["brand"] = "north"; },
       "events[0].attributes: is set by the catalogue"},
      // Past a run of ASCII words, and in the last bytes after them.
      {[](v1::Event& e) { e.set_item_id("item-0000001\xc3\x28xyz"); },
       "events[0].item_id: must be valid UTF-8"},
      {[](v1::Event& e) { e.set_item_id("item-000000000000001\xff"); },
       "events[0].item_id: must be valid UTF-8"},
      {[](v1::Event& e) { e.set_unit_price(NAN); }, "events[0].unit_price: must be a finite"},
      {[](v1::Event& e) { e.set_unit_price(0); }, "events[0].unit_price: must be > 0"},
      {[](v1::Event& e) { e.set_quantity(-1); }, "events[0].quantity: must be in"},
      {[](v1::Event& e) { e.set_timestamp_ms(0); }, "events[0].timestamp_ms:"},
      {[](v1::Event& e) { e.set_type(static_cast<v1::EventType>(42)); }, "events[0].type:"},
      {[](v1::Event& e) {
         e.set_type(v1::FRAUD_LABEL);
         e.set_order_id("o");
         e.set_value(0.5);
       },
       "events[0].value: must be 0"},
  };
  for (const Case& c : cases) {
    v1::Event e = Good();
    c.spoil(e);
    auto r = ToCoreEvent(e, "events[0]");
    ASSERT_FALSE(r.ok()) << c.prefix;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(r.status().message()).rfind(c.prefix, 0), 0u) << r.status();
  }
}

TEST(ValidationTest, Utf8AcceptsMultibyteAndRejectsOverlongForms) {
  EXPECT_TRUE(CheckId("id", "caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80").ok());
  EXPECT_FALSE(CheckId("id", "\xc0\xaf").ok());
  EXPECT_FALSE(CheckId("id", "\xe2\x82").ok());
}

TEST(ValidationTest, ItemLimits) {
  v1::Item item;
  item.set_item_id("sku");
  item.set_price(5);
  EXPECT_TRUE(ToCoreItem(item, "items[0]").ok());
  for (int i = 0; i < 9; ++i) item.add_category_path("c");
  auto r = ToCoreItem(item, "items[0]");
  EXPECT_EQ(std::string(r.status().message()).rfind("items[0].category_path:", 0), 0u);
}

}  // namespace
}  // namespace mercato::server
