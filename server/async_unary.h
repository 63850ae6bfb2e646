// Unary RPCs on gRPC's completion-queue API: one pending call per method and
// queue. A call that arrives joins its queue thread's ServingQueue and is
// served from there by that thread (or, when it must wait for its
// min_sequence, on the read barrier's: server/read_barrier.h). The
// echo benchmark measured this API at about 1.3-2x the callback API on this
// machine's kind (see clients/BENCHMARKS.md), so the read-only model RPCs
// use it. Handlers must not block. Calls are requested raw and parsed here (see
// server/own_parsing.h), so undecodable bytes get INVALID_ARGUMENT.
#ifndef MERCATO_SERVER_ASYNC_UNARY_H_
#define MERCATO_SERVER_ASYNC_UNARY_H_

#include <google/protobuf/arena.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "server/gate.h"
#include "server/own_parsing.h"
#include "server/read_barrier.h"

namespace mercato::server {

class CallTag {
 public:
  virtual ~CallTag() = default;
  // `ok` is the completion queue's verdict on the last operation.
  virtual void Proceed(bool ok) = 0;
};

// The answer to a call whose deadline passes before its work could finish.
inline grpc::Status TooLate() {
  return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                      "deadline: reached, or too near for the work, before the call was served; "
                      "nothing was done");
}

// A call taken from gRPC whose work has not started.
class QueuedCall {
 public:
  virtual ~QueuedCall() = default;
  // Does the work and replies.
  virtual void Serve() = 0;
  // Replies `status` without the work.
  virtual void Refuse(const grpc::Status& status) = 0;
  // Whether the call's deadline leaves no time for its work at `now`.
  virtual bool Late(std::chrono::system_clock::time_point now) const = 0;
};

// The calls one completion-queue thread has taken from gRPC and not yet
// served; used by that thread only. Bounded: a call that finds it full
// pushes out the oldest, which is refused with RESOURCE_EXHAUSTED. Calls are
// served oldest first while the oldest has waited less than
// kNewestFirstAfter; beyond that the server is behind its arrivals, and the
// calls at the front that are too late for their deadlines are answered
// DEADLINE_EXCEEDED and the newest is served: under overload the calls
// served are the ones whose callers still wait, instead of calls about to
// be given up.
class ServingQueue {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kNewestFirstAfter = std::chrono::milliseconds(10);

  // REQUIRES: capacity > 0.
  explicit ServingQueue(size_t capacity) : capacity_(capacity) {}
  ServingQueue(const ServingQueue&) = delete;

  bool empty() const { return calls_.empty(); }

  // `call` arrived at `arrived`, no earlier than the calls already queued.
  void Push(QueuedCall* call, Clock::time_point arrived) {
    if (calls_.size() >= capacity_) {
      QueuedCall* oldest = calls_.front().call;
      calls_.pop_front();
      oldest->Refuse(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                  "server: overloaded, its queue of calls is full; retry later"));
    }
    calls_.push_back({call, arrived});
  }

  // REQUIRES: !empty(). The next call to serve at `now` (null when only
  // late calls were left, all answered).
  QueuedCall* Pop(Clock::time_point now);

 private:
  struct Waiting {
    QueuedCall* call;
    Clock::time_point arrived;
  };
  std::deque<Waiting> calls_;
  size_t capacity_;
};

inline QueuedCall* ServingQueue::Pop(Clock::time_point now) {
  if (now - calls_.front().arrived >= kNewestFirstAfter) {
    const auto wall = std::chrono::system_clock::now();
    while (!calls_.empty() && calls_.front().call->Late(wall)) {
      calls_.front().call->Refuse(TooLate());
      calls_.pop_front();
    }
    if (calls_.empty()) return nullptr;
    QueuedCall* newest = calls_.back().call;
    calls_.pop_back();
    return newest;
  }
  QueuedCall* oldest = calls_.front().call;
  calls_.pop_front();
  return oldest;
}

// Told of every call of one method, on the thread that serves it.
class CallObserver {
 public:
  virtual ~CallObserver() = default;
  virtual void Started() = 0;
  // `seconds` from the call's arrival to its status being sent.
  virtual void Finished(grpc::StatusCode code, double seconds) = 0;
};

template <class Req, class Resp>
using UnaryHandler = std::function<grpc::Status(grpc::ServerContext&, const Req&, Resp*)>;

// A generated `WithRawMethod_X<...>::RequestX`.
template <class Service>
using RequestMethod = void (Service::*)(grpc::ServerContext*, grpc::ByteBuffer*,
                                        grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>*,
                                        grpc::CompletionQueue*, grpc::ServerCompletionQueue*,
                                        void*);

// What every call of one method shares.
template <class Service, class Req, class Resp>
struct UnaryMethod {
  Service* service;
  RequestMethod<Service> request;
  UnaryHandler<Req, Resp> handler;
  // Admits each call.
  std::unique_ptr<MethodGate> gate;
  // Told of every call; may be null.
  CallObserver* observer;
  // Holds calls that carry a min_sequence; may be null.
  ReadBarrier* barrier = nullptr;
  // A running estimate of the handler's time, in nanoseconds: a call whose
  // deadline comes sooner is not started.
  std::atomic<int64_t> cost_ns{0};
};

template <class Service, class Req, class Resp>
class UnaryCall final : public CallTag, public QueuedCall {
 public:
  static constexpr size_t kArenaBlockBytes = 8192;
  using Method = UnaryMethod<Service, Req, Resp>;

  // Registers a pending call; it deletes itself when done.
  static void Listen(Method* method, grpc::ServerCompletionQueue* cq, ServingQueue* queue) {
    new UnaryCall(method, cq, queue);
  }

  void Proceed(bool ok) override {
    if (replied_ || !ok) {  // finished, or the queue is shutting down
      if (replied_ && m_->observer) {
        m_->observer->Finished(
            code_,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
      }
      delete this;
      return;
    }
    start_ = std::chrono::steady_clock::now();
    if (m_->observer) m_->observer->Started();
    Listen(m_, cq_, queue_);
    std::string who;
    grpc::Status admitted = m_->gate->Admit(ctx_, &who);
    absl::StatusOr<uint64_t> min_sequence = 0;
    if (admitted.ok() && m_->barrier != nullptr) {
      min_sequence = ReadBarrier::MinSequence(ctx_);
      if (!min_sequence.ok()) admitted = ToGrpcStatus(min_sequence.status());
    }
    if (!admitted.ok()) return Reply(admitted);
    if (*min_sequence > 0 && !m_->barrier->Reached(*min_sequence)) {
      // Served from the barrier's thread once this replica has the write.
      m_->barrier->Park(*min_sequence, ctx_,
                        [this](grpc::Status reached) { Reply(reached.ok() ? Work() : reached); });
      return;
    }
    queue_->Push(this, start_);
  }

  void Serve() override { Reply(Work()); }
  void Refuse(const grpc::Status& status) override { Reply(status); }
  bool Late(std::chrono::system_clock::time_point now) const override {
    return ctx_.deadline() <
           now + std::chrono::nanoseconds(m_->cost_ns.load(std::memory_order_relaxed));
  }

 private:
  // Handle(), unless the deadline leaves no time for it; keeps the
  // estimate of its cost.
  grpc::Status Work() {
    const auto begin = std::chrono::steady_clock::now();
    if (Late(std::chrono::system_clock::now())) return TooLate();
    const int64_t cost = m_->cost_ns.load(std::memory_order_relaxed);
    grpc::Status status = Handle();
    const int64_t took = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - begin)
                             .count();
    // An exponential average over about the last 16 calls.
    m_->cost_ns.store(cost + (took - cost) / 16, std::memory_order_relaxed);
    return status;
  }

  void Reply(const grpc::Status& status) {
    code_ = status.error_code();
    replied_ = true;
    if (status.ok()) {
      writer_.Finish(reply_, status, this);
    } else {
      writer_.FinishWithError(status, this);
    }
  }

  // Parses the request, runs the handler and serializes its response.
  grpc::Status Handle() {
    // The request and the response live in an arena whose first block is
    // on this stack: a call of ordinary size allocates nothing for them.
    alignas(16) char first_block[kArenaBlockBytes];
    google::protobuf::ArenaOptions options;
    options.initial_block = first_block;
    options.initial_block_size = sizeof(first_block);
    google::protobuf::Arena arena(options);
    Req* request = google::protobuf::Arena::CreateMessage<Req>(&arena);
    if (absl::Status s = ParseRequest(bytes_, "request", request); !s.ok()) {
      return ToGrpcStatus(s);
    }
    Resp* response = google::protobuf::Arena::CreateMessage<Resp>(&arena);
    grpc::Status status = m_->handler(ctx_, *request, response);
    if (status.ok() && !SerializeResponse(*response, &reply_)) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "response: too large to serialize");
    }
    return status;
  }

  UnaryCall(Method* method, grpc::ServerCompletionQueue* cq, ServingQueue* queue)
      : m_(method), cq_(cq), queue_(queue), writer_(&ctx_) {
    (m_->service->*m_->request)(&ctx_, &bytes_, &writer_, cq_, cq_, this);
  }

  Method* m_;
  grpc::ServerCompletionQueue* cq_;
  ServingQueue* queue_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer bytes_, reply_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> writer_;
  bool replied_ = false;
  grpc::StatusCode code_ = grpc::StatusCode::OK;
  std::chrono::steady_clock::time_point start_;
};

// Owns the completion queues and their threads, and the handlers of every
// asynchronous method. Add methods, build the server, then Start().
class AsyncDispatcher {
 public:
  AsyncDispatcher() = default;
  AsyncDispatcher(const AsyncDispatcher&) = delete;
  ~AsyncDispatcher() { Shutdown(); }

  // `owner` is the generated service with the method raw
  // (WithRawMethod_X); `method` may belong to one of its bases. `observer`
  // (may be null) is told of every call; `gate` admits each.
  template <class Owner, class Service, class Req, class Resp>
  void Add(Owner* owner, RequestMethod<Service> method, UnaryHandler<Req, Resp> handler,
           std::unique_ptr<MethodGate> gate, CallObserver* observer) {
    auto m = std::make_shared<UnaryMethod<Service, Req, Resp>>();
    m->service = owner;
    m->request = method;
    m->handler = std::move(handler);
    m->gate = std::move(gate);
    m->observer = observer;
    m->barrier = barrier_;
    listeners_.push_back([m](grpc::ServerCompletionQueue* cq, ServingQueue* queue) {
      UnaryCall<Service, Req, Resp>::Listen(m.get(), cq, queue);
    });
    methods_.push_back(std::move(m));
  }

  // Calls may carry a min_sequence, held at `barrier` (not owned; may be
  // null: the metadata is ignored). REQUIRES: before Add.
  void SetBarrier(ReadBarrier* barrier) { barrier_ = barrier; }

  // `threads` completion queues, each with a thread and a ServingQueue of
  // `max_queued_calls`. REQUIRES: before the server is built;
  // max_queued_calls > 0.
  void AddQueues(grpc::ServerBuilder& builder, int threads, size_t max_queued_calls) {
    for (int i = 0; i < threads; ++i) {
      queues_.push_back(builder.AddCompletionQueue());
      serving_.push_back(std::make_unique<ServingQueue>(max_queued_calls));
    }
  }

  // REQUIRES: after the server is built.
  void Start() {
    for (size_t i = 0; i < queues_.size(); ++i) {
      for (auto& listen : listeners_) listen(queues_[i].get(), serving_[i].get());
      threads_.emplace_back(Serve, queues_[i].get(), serving_[i].get());
    }
  }

  // REQUIRES: after the server's Shutdown(). Drains and joins the queues.
  void Shutdown() {
    for (auto& cq : queues_) cq->Shutdown();
    for (auto& t : threads_) t.join();
    threads_.clear();
    queues_.clear();
    serving_.clear();
  }

 private:
  // One queue's thread: serves the calls it has taken, and takes what gRPC
  // has ready (without waiting) at least every kIntakeEvery while it has
  // calls to serve, so that it chooses among the calls that arrived.
  static void Serve(grpc::ServerCompletionQueue* cq, ServingQueue* calls) {
    constexpr auto kIntakeEvery = std::chrono::milliseconds(1);
    void* tag;
    bool ok;
    auto intake = std::chrono::steady_clock::now();
    for (;;) {
      if (calls->empty()) {
        if (!cq->Next(&tag, &ok)) return;
        static_cast<CallTag*>(tag)->Proceed(ok);
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - intake >= kIntakeEvery) {
        intake = now;
        while (cq->AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) ==
               grpc::CompletionQueue::GOT_EVENT) {
          static_cast<CallTag*>(tag)->Proceed(ok);
        }
      }
      if (QueuedCall* call = calls->Pop(now)) call->Serve();
    }
  }

  std::vector<std::function<void(grpc::ServerCompletionQueue*, ServingQueue*)>> listeners_;
  std::vector<std::shared_ptr<void>> methods_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::unique_ptr<ServingQueue>> serving_;
  std::vector<std::thread> threads_;
  ReadBarrier* barrier_ = nullptr;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_ASYNC_UNARY_H_
