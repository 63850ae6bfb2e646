// Runs the real mercato-server binary as a child process on a loopback port
// with its data in a temporary folder, for integration tests.
#ifndef MERCATO_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define MERCATO_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "clients/client_util.h"

namespace mercato::testing {

// A fresh empty folder under $TMPDIR, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ServerProcess {
 public:
  // Starts the server on `data_dir` with extra flags and waits until its
  // health check, over a channel with `tls`, says SERVING (fails the test
  // after 30 s), or with `wait_serving` false only until it listens.
  ServerProcess(const std::string& data_dir, std::vector<std::string> flags = {},
                clients::ClientAuth tls = {}, bool wait_serving = true);
  ~ServerProcess();  // SIGKILL if still running

  int port() const { return port_; }
  // The port of its Prometheus /metrics endpoint.
  int metrics_port() const { return metrics_port_; }
  std::string target() const;
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  // Sends `sig` and, for a terminating signal, waits for exit. Returns the
  // exit status as from waitpid (use WIFEXITED/WEXITSTATUS), or -1.
  int Signal(int sig);
  int Kill() { return Signal(SIGKILL); }
  int Terminate() { return Signal(SIGTERM); }

 private:
  void Start(const std::string& data_dir, std::vector<std::string> flags,
             const clients::ClientAuth& tls, bool wait_serving);
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

// Runs mercato-server with `flags` (a data folder of its own and no metrics
// are given) until it exits or 10 s pass: its exit code (-1 when still
// running, then killed) and its stderr in `err`.
int RunServer(const std::string& flags, std::string* err);

// A loopback port free now (another process may take it before it is used).
int FreePort();

// GET http://127.0.0.1:port/path with `headers` (each ending in \r\n): the
// body, or "" on failure.
std::string HttpGet(int port, const std::string& path, const std::string& headers = "");

}  // namespace mercato::testing

#endif  // MERCATO_TESTS_INTEGRATION_SERVER_PROCESS_H_
