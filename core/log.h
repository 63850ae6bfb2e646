// Minimal structured logging: one line per record on stderr,
//   2026-11-22T19:05:30.123Z level=info src=learner.cc:42 msg="..."
// with a process-wide minimum level. Thread-safe.
#ifndef MERCATO_CORE_LOG_H_
#define MERCATO_CORE_LOG_H_

#include <sstream>
#include <string_view>

namespace mercato::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// Parses "debug", "info", "warning" or "error"; false when unknown.
bool ParseLogLevel(std::string_view name, LogLevel* out);

class LogRecord {
 public:
  LogRecord(LogLevel level, const char* file, int line) : level_(level), file_(file), line_(line) {}
  ~LogRecord();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

// Turns a streamed record into void for the conditional in MERCATO_LOG.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace mercato::core

// One expression, so that it nests in if/else without braces; the record is
// built only when its level is on.
#define MERCATO_LOG(level)                                                 \
  (::mercato::core::LogLevel::level < ::mercato::core::MinLogLevel())      \
      ? (void)0                                                            \
      : ::mercato::core::LogVoidify() &                                    \
            ::mercato::core::LogRecord(::mercato::core::LogLevel::level,   \
                                       __FILE__, __LINE__)                 \
                .stream()

#endif  // MERCATO_CORE_LOG_H_
