// Runs a real redis-server (the one deploy/install-deps.sh installs) as a
// child process on a free loopback port, its data in a folder of the test's,
// with the append-only file fsynced on every write, as README recommends
// for a shared log.
#ifndef MERCATO_TESTS_INTEGRATION_REDIS_PROCESS_H_
#define MERCATO_TESTS_INTEGRATION_REDIS_PROCESS_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/server_process.h"

namespace mercato::testing {

class RedisProcess {
 public:
  // Starts on a free port with its files in `dir` and `extra` arguments,
  // of which a --requirepass is also what Cli authenticates with.
  explicit RedisProcess(std::string dir, std::vector<std::string> extra = {})
      : dir_(std::move(dir)), extra_(std::move(extra)), port_(FreePort()) {
    for (size_t i = 0; i + 1 < extra_.size(); ++i) {
      if (extra_[i] == "--requirepass") password_ = extra_[i + 1];
    }
    Start();
  }
  ~RedisProcess() { Kill(); }

  int port() const { return port_; }
  // The --event_log of a stream on this server.
  std::string Url(const std::string& stream) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + stream;
  }

  // (Again, after Kill: same port, same files.) Waits until it answers PING.
  void Start() {
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<std::string> args = {"/usr/bin/redis-server",
                                       "--port",
                                       std::to_string(port_),
                                       "--bind",
                                       "127.0.0.1",
                                       "--dir",
                                       dir_,
                                       "--appendonly",
                                       "yes",
                                       "--appendfsync",
                                       "always",
                                       "--save",
                                       "",
                                       "--daemonize",
                                       "no",
                                       "--logfile",
                                       dir_ + "/redis.log"};
      args.insert(args.end(), extra_.begin(), extra_.end());
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      if (Cli("PING") == "PONG") return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "redis-server did not answer on port " << port_ << " (see " << dir_ << "/redis.log)";
  }

  // SIGKILL: what Redis acknowledged is in its fsynced append-only file.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // redis-cli's answer to `command` (words split at spaces), trimmed.
  std::string Cli(const std::string& command) const {
    const std::string auth = password_.empty() ? "" : " --no-auth-warning -a " + password_;
    const std::string line =
        "redis-cli -p " + std::to_string(port_) + auth + " " + command + " 2>/dev/null";
    std::string out;
    if (FILE* p = popen(line.c_str(), "r")) {
      std::array<char, 4096> buf;
      for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) out.append(buf.data(), n);
      pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

 private:
  const std::string dir_;
  const std::vector<std::string> extra_;
  std::string password_;
  const int port_;
  pid_t pid_ = -1;
};

}  // namespace mercato::testing

#endif  // MERCATO_TESTS_INTEGRATION_REDIS_PROCESS_H_
