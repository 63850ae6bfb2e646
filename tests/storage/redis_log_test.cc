// The shared log's address; its behaviour against a real redis-server is in
// tests/integration/replica_test.cc.
#include "storage/redis_log.h"

#include <gtest/gtest.h>

namespace mercato::storage {
namespace {

TEST(RedisUrlTest, ParsesHostPortStreamAndPassword) {
  absl::StatusOr<RedisLogOptions> o = ParseRedisUrl("redis://10.0.0.5:6380/shop", "event_log");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->host, "10.0.0.5");
  EXPECT_EQ(o->port, 6380);
  EXPECT_EQ(o->stream, "shop");
  EXPECT_EQ(o->password, "");
  o = ParseRedisUrl("redis://:p@ss:w0rd@redis.internal:6379/a/b", "event_log");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->password, "p@ss:w0rd");
  EXPECT_EQ(o->host, "redis.internal");
  EXPECT_EQ(o->stream, "a/b");
}

TEST(RedisUrlTest, RefusalsNameTheFlagAndTheProblem) {
  for (const auto& [url, why] :
       std::vector<std::pair<std::string, std::string>>{{"http://h:1/s", "redis://"},
                                                        {"redis://h:1", "names no stream"},
                                                        {"redis://h:1/", "names no stream"},
                                                        {"redis://h/s", "HOST:PORT"},
                                                        {"redis://h:0/s", "port"},
                                                        {"redis://h:99999/s", "port"},
                                                        {"redis://user:pw@h:1/s", ":PASSWORD@"}}) {
    const absl::Status s = ParseRedisUrl(url, "event_log").status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << url;
    EXPECT_NE(s.message().find("--event_log: '" + url + "'"), std::string::npos) << s;
    EXPECT_NE(s.message().find(why), std::string::npos) << url << ": " << s;
  }
}

}  // namespace
}  // namespace mercato::storage
