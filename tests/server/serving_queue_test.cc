#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "server/async_unary.h"

namespace mercato::server {
namespace {

using Clock = std::chrono::system_clock;
using Steady = ServingQueue::Clock;

// A call that records what happened to it.
class FakeCall : public QueuedCall {
 public:
  FakeCall(int id, bool late, std::vector<std::string>* log) : id_(id), late_(late), log_(log) {}
  void Serve() override { log_->push_back("served " + std::to_string(id_)); }
  void Refuse(const grpc::Status& status) override {
    log_->push_back("refused " + std::to_string(id_) + " " + std::to_string(status.error_code()));
  }
  bool Late(Clock::time_point) const override { return late_; }

 private:
  int id_;
  bool late_;
  std::vector<std::string>* log_;
};

// Serves every call the queue hands out at `now` until it is empty.
void Drain(ServingQueue& queue, Steady::time_point now) {
  while (!queue.empty()) {
    if (QueuedCall* call = queue.Pop(now)) call->Serve();
  }
}

TEST(ServingQueueTest, CallsThatHaveNotWaitedLongAreServedOldestFirst) {
  std::vector<std::string> log;
  std::vector<FakeCall> calls;
  for (int i = 0; i < 3; ++i) calls.emplace_back(i, false, &log);
  ServingQueue queue(10);
  const Steady::time_point t0 = Steady::now();
  for (FakeCall& c : calls) queue.Push(&c, t0);
  Drain(queue, t0 + ServingQueue::kNewestFirstAfter - std::chrono::microseconds(1));
  EXPECT_EQ(log, (std::vector<std::string>{"served 0", "served 1", "served 2"}));
}

TEST(ServingQueueTest, ABackedUpQueueAnswersLateCallsAndServesNewestFirst) {
  std::vector<std::string> log;
  std::vector<FakeCall> calls;
  // The oldest two are past their deadlines.
  for (int i = 0; i < 6; ++i) calls.emplace_back(i, i < 2, &log);
  ServingQueue queue(10);
  const Steady::time_point t0 = Steady::now();
  for (int i = 0; i < 6; ++i) queue.Push(&calls[i], t0 + std::chrono::milliseconds(i));
  const Steady::time_point behind = t0 + ServingQueue::kNewestFirstAfter;
  queue.Pop(behind)->Serve();
  // DEADLINE_EXCEEDED is code 4.
  ASSERT_EQ(log, (std::vector<std::string>{"refused 0 4", "refused 1 4", "served 5"}));
  // Call 2 arrived 2 ms after call 0: not yet waited long enough at `behind`.
  log.clear();
  Drain(queue, behind);
  EXPECT_EQ(log, (std::vector<std::string>{"served 2", "served 3", "served 4"}));
}

TEST(ServingQueueTest, WhileBehindTheNewestIsServedAndTheOldestWaits) {
  std::vector<std::string> log;
  std::vector<FakeCall> calls;
  for (int i = 0; i < 5; ++i) calls.emplace_back(i, false, &log);
  ServingQueue queue(10);
  const Steady::time_point t0 = Steady::now();
  for (FakeCall& c : calls) queue.Push(&c, t0);
  const Steady::time_point behind = t0 + ServingQueue::kNewestFirstAfter;
  for (int k = 0; k < 3; ++k) queue.Pop(behind)->Serve();
  EXPECT_EQ(log, (std::vector<std::string>{"served 4", "served 3", "served 2"}));
}

TEST(ServingQueueTest, AFullQueueRefusesItsOldestCall) {
  std::vector<std::string> log;
  std::vector<FakeCall> calls;
  for (int i = 0; i < 4; ++i) calls.emplace_back(i, false, &log);
  ServingQueue queue(3);
  const Steady::time_point t0 = Steady::now();
  for (FakeCall& c : calls) queue.Push(&c, t0);
  // RESOURCE_EXHAUSTED is code 8.
  ASSERT_EQ(log, (std::vector<std::string>{"refused 0 8"}));
  log.clear();
  Drain(queue, t0);
  EXPECT_EQ(log, (std::vector<std::string>{"served 1", "served 2", "served 3"}));
}

}  // namespace
}  // namespace mercato::server
