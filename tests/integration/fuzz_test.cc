// Random and damaged requests to every unary method the real server offers:
// none may crash it or get an error meant for a fault of the server, and what
// it stored from them must load again after SIGKILL. Longer campaigns:
// MERCATO_FUZZ_CALLS (per method, default 400) and MERCATO_FUZZ_SEED.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "server/access.h"
#include "tests/integration/api_seeds.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Changes messages through reflection to values chosen to hit limits: empty,
// huge and non-UTF-8 strings, ids the shop knows, NaN and infinities, unknown
// enum numbers, long repeated fields.
class RandomRequests {
 public:
  explicit RandomRequests(uint64_t seed) : rng_(seed) {}

  // A message of random fields, each set with probability 1/2.
  void Fill(Message* m, int depth) {
    const Reflection* r = m->GetReflection();
    for (int i = 0; i < m->GetDescriptor()->field_count(); ++i) {
      const FieldDescriptor* f = m->GetDescriptor()->field(i);
      if (OneIn(2) || (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth >= 3)) continue;
      Put(m, r, f, depth);
    }
  }

  // Sets one field somewhere in `m` (or adds an element to a repeated one)
  // to a random value.
  void Mutate(Message* m) {
    const auto* d = m->GetDescriptor();
    if (d->field_count() == 0) return;
    const FieldDescriptor* f = d->field(static_cast<int>(Below(d->field_count())));
    const Reflection* r = m->GetReflection();
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !OneIn(3)) {
      if (f->is_repeated() && r->FieldSize(*m, f) > 0) {
        return Mutate(
            r->MutableRepeatedMessage(m, f, static_cast<int>(Below(r->FieldSize(*m, f)))));
      }
      if (!f->is_repeated()) return Mutate(r->MutableMessage(m, f));
    }
    for (int n = f->is_repeated() && OneIn(20) ? 1500 : 1; n > 0; --n) Put(m, r, f);
  }

  // Damages serialised bytes: flips, cuts, repeats or inserts a few bytes.
  std::string Damage(std::string bytes) {
    for (int n = 1 + static_cast<int>(Below(3)); n > 0; --n) {
      const size_t at = bytes.empty() ? 0 : Below(bytes.size());
      switch (Below(4)) {
        case 0:
          if (!bytes.empty()) bytes[at] = static_cast<char>(bytes[at] ^ (1 << Below(8)));
          break;
        case 1:
          bytes.erase(at, Below(8));
          break;
        case 2:
          bytes.insert(at, bytes.substr(at, Below(16)));
          break;
        default:
          bytes.insert(at, 1, static_cast<char>(Below(256)));
      }
    }
    return bytes;
  }

  uint64_t Below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  bool OneIn(uint64_t n) { return Below(n) == 0; }

 private:
  std::string String() {
    switch (Below(9)) {
      case 0:
        return "";
      case 1:
        return absl::StrCat("u", Below(20));
      case 2:
        return absl::StrCat("i", Below(20));
      case 3:
        return "EUR";
      case 4:
        return "DE";
      case 5:
        return std::string(1 + Below(3000), 'x');
      case 6:
        return std::string("bad\xff\xfe utf8", 12);
      case 7:
        return std::string("nul\0inside", 10);
      default: {  // printable: strings that are not UTF-8 never reach a handler
        std::string s(Below(40), ' ');
        for (char& c : s) c = static_cast<char>(' ' + Below(95));
        return s;
      }
    }
  }
  int64_t Integer() {
    static constexpr int64_t kValues[] = {0,
                                          1,
                                          -1,
                                          7,
                                          1000,
                                          1 << 20,
                                          1732280000000,
                                          std::numeric_limits<int32_t>::max(),
                                          std::numeric_limits<int64_t>::min(),
                                          std::numeric_limits<int64_t>::max()};
    return OneIn(4) ? static_cast<int64_t>(rng_()) : kValues[Below(std::size(kValues))];
  }
  double Real() {
    static constexpr double kValues[] = {0,
                                         1,
                                         -1,
                                         2.5,
                                         1e300,
                                         -1e300,
                                         1e-300,
                                         std::numeric_limits<double>::quiet_NaN(),
                                         std::numeric_limits<double>::infinity(),
                                         -std::numeric_limits<double>::infinity()};
    return OneIn(4) ? std::uniform_real_distribution<double>(-1e6, 1e6)(rng_)
                    : kValues[Below(std::size(kValues))];
  }
  int Enum(const FieldDescriptor* f) {
    const auto* e = f->enum_type();
    return OneIn(5) ? static_cast<int>(Integer())
                    : e->value(static_cast<int>(Below(e->value_count())))->number();
  }

  // Sets `f` to a random value, or adds one when it is repeated.
  void Put(Message* m, const Reflection* r, const FieldDescriptor* f, int depth = 0) {
    const bool add = f->is_repeated();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        add ? r->AddString(m, f, String()) : r->SetString(m, f, String());
        break;
      case FieldDescriptor::CPPTYPE_INT32: {
        const auto v = static_cast<int32_t>(Integer());
        add ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_INT64:
        add ? r->AddInt64(m, f, Integer()) : r->SetInt64(m, f, Integer());
        break;
      case FieldDescriptor::CPPTYPE_UINT32: {
        const auto v = static_cast<uint32_t>(Integer());
        add ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        const auto v = static_cast<uint64_t>(Integer());
        add ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
        add ? r->AddDouble(m, f, Real()) : r->SetDouble(m, f, Real());
        break;
      case FieldDescriptor::CPPTYPE_FLOAT: {
        const auto v = static_cast<float>(Real());
        add ? r->AddFloat(m, f, v) : r->SetFloat(m, f, v);
        break;
      }
      case FieldDescriptor::CPPTYPE_BOOL:
        add ? r->AddBool(m, f, OneIn(2)) : r->SetBool(m, f, OneIn(2));
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        add ? r->AddEnumValue(m, f, Enum(f)) : r->SetEnumValue(m, f, Enum(f));
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        Fill(add ? r->AddMessage(m, f) : r->MutableMessage(m, f), depth + 1);
        break;
    }
  }

  std::mt19937_64 rng_;
};

TEST(FuzzTest, RandomAndDamagedRequestsNeitherCrashNorCorrupt) {
  google::protobuf::LogSilencer quiet;  // the damaged strings' parse errors
  TempDir dir, files;
  // With tokens checked, by a token with every scope.
  const std::string token = server::NewToken();
  std::vector<server::Scope> every;
  for (int i = 0; i < server::kScopeCount; ++i) every.push_back(static_cast<server::Scope>(i));
  std::ofstream(files.path() + "/access") << server::TokenLine("fuzz", token, every) << "\n";
  const std::vector<std::string> flags = {"--auth_tokens_file=" + files.path() + "/access"};
  const clients::ClientAuth auth{"", "", "", token};
  uint64_t log_end = 0;
  {
    ServerProcess server(dir.path(), flags, auth);
    grpc::GenericStub stub(server.channel());
    const std::vector<std::string> services = ServedServices(server.channel());
    // Every seed once as it is first, so that the data the models' methods
    // read (ingested events, catalogue items) is there whatever the order
    // the services are fuzzed in.
    for (const auto& [path, text] : Seeds()) {
      std::string reply;
      CallRaw(stub, path, SeedRequest(path, 0), &reply);
    }
    size_t fuzzed = 0;
    const char* seed = std::getenv("MERCATO_FUZZ_SEED");
    const char* calls = std::getenv("MERCATO_FUZZ_CALLS");
    RandomRequests random(seed ? std::strtoull(seed, nullptr, 10) : 20261129);
    const int calls_per_method = calls ? std::atoi(calls) : 400;
    for (const std::string& name : services) {
      const auto* service =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
      ASSERT_NE(service, nullptr) << name;
      for (int m = 0; m < service->method_count(); ++m) {
        const auto* method = service->method(m);
        if (method->client_streaming() || method->server_streaming()) continue;
        const std::string path = absl::StrCat("/", name, "/", method->name());
        ASSERT_TRUE(Seeds().contains(path)) << "no seed request for " << path;
        ++fuzzed;
        const Message* prototype =
            google::protobuf::MessageFactory::generated_factory()->GetPrototype(
                method->input_type());
        int ok = 0;
        for (int i = 0; i < calls_per_method; ++i) {
          // A quarter of the requests are random through and through; the
          // others are the valid seed with up to three fields changed.
          std::unique_ptr<Message> request(prototype->New());
          if (random.OneIn(4)) {
            random.Fill(request.get(), 0);
          } else {
            ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
                absl::StrReplaceAll(Seeds().at(path), {{"$i", absl::StrCat(i)}}), request.get()))
                << path;
            for (int n = static_cast<int>(random.Below(4)); n > 0; --n)
              random.Mutate(request.get());
          }
          std::string bytes = request->SerializePartialAsString();
          if (random.OneIn(4)) bytes = random.Damage(bytes);
          // Bytes that are no such request are refused as such.
          const bool parses = std::unique_ptr<Message>(prototype->New())->ParseFromString(bytes);
          std::string reply;
          const grpc::Status s = CallRaw(stub, path, bytes, &reply);
          const grpc::StatusCode code = s.error_code();
          ok += s.ok();
          const bool allowed = code == grpc::StatusCode::OK ||
                               code == grpc::StatusCode::INVALID_ARGUMENT ||
                               code == grpc::StatusCode::NOT_FOUND ||
                               code == grpc::StatusCode::FAILED_PRECONDITION ||
                               code == grpc::StatusCode::RESOURCE_EXHAUSTED;
          ASSERT_TRUE(allowed) << path << " answered " << code << " \"" << s.error_message()
                               << "\" to " << request->ShortDebugString().substr(0, 2000);
          if (!parses) {
            EXPECT_EQ(s.error_message().rfind("request: bytes that are not a ", 0), 0u)
                << path << ": " << s.error_message();
          }
          if (code == grpc::StatusCode::INVALID_ARGUMENT) {
            // Every refusal names the field it refuses: "field: why".
            EXPECT_NE(s.error_message().find(": "), std::string::npos)
                << path << ": " << s.error_message();
          }
          if (s.ok()) {
            std::unique_ptr<Message> response(google::protobuf::MessageFactory::generated_factory()
                                                  ->GetPrototype(method->output_type())
                                                  ->New());
            EXPECT_TRUE(response->ParseFromString(reply)) << path;
          }
        }
        // The seeds reach each method's work, not only its checks.
        EXPECT_GT(ok, 0) << path;
      }
    }
    // Every seed is a method the server serves: none is left behind.
    EXPECT_EQ(fuzzed, Seeds().size());
    auto admin = v1::Admin::NewStub(server.channel());
    const v1::ModelStatusResponse st = WaitCaughtUp(*admin, 60);
    ASSERT_TRUE(st.ready());
    log_end = st.log_sequence();
    EXPECT_GT(log_end, 200u);  // the valid events, items and orders among them
    v1::CheckpointResponse cp;
    ASSERT_TRUE(admin->Checkpoint(Ctx().get(), v1::CheckpointRequest(), &cp).ok());
    server.Kill();
  }
  // What was stored loads again, with every acknowledged event; past the
  // position read before the kill there are only records the server writes
  // itself: the FIT_DONE of a fit the kill cut short and that ran again, and
  // the answers served that its once-a-second record of them logged.
  ServerProcess again(dir.path(), flags, auth);
  auto admin = v1::Admin::NewStub(again.channel());
  const v1::ModelStatusResponse st = WaitCaughtUp(*admin, 60);
  EXPECT_TRUE(st.ready());
  EXPECT_GE(st.log_sequence(), log_end);
  EXPECT_EQ(st.applied_sequence(), st.log_sequence());
  for (const v1::LoggedEvent& e : ReadWholeLog(*admin)) {
    if (e.sequence() <= log_end) continue;
    EXPECT_TRUE(e.event().type() == v1::FIT_DONE ||
                e.event().type() == v1::RECOMMENDATIONS_SERVED)
        << e.DebugString();
  }
}

}  // namespace
}  // namespace mercato::testing
