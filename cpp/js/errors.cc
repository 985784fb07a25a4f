#include "js/errors.h"

#include <sstream>

#include "js/addon_state.h"

namespace easyroutine {
struct ErrorReportPeek {
  std::string* message;
};
}  // namespace easyroutine

// ErrorReport befriends every specialisation of this operator template: this one reads the message
// it was given without rendering source ranges.
template <>
const torch::jit::ErrorReport& torch::jit::operator<< <easyroutine::ErrorReportPeek>(const torch::jit::ErrorReport& report,
                                                                                     const easyroutine::ErrorReportPeek& peek) {
  *peek.message = report.ss.str();
  return report;
}

namespace easyroutine {

std::string CompilationMessage(const torch::jit::ErrorReport& report) {
  std::string message;
  report << ErrorReportPeek{&message};
  while (!message.empty() && (message.front() == '\n' || message.front() == ' ')) message.erase(message.begin());
  return "TorchScript compilation failed: " + message;
}

Napi::Error MakeError(Napi::Env env, ErrorKind kind, const std::string& message, const std::string& detail) {
  Napi::Error error;
  AddonState* state = AddonState::Find(env);
  const Napi::FunctionReference* cls = state ? &state->errorClasses[static_cast<size_t>(kind)] : nullptr;
  if (cls && !cls->IsEmpty()) {
    Napi::Value instance = cls->New({Napi::String::New(env, message)});
    error = Napi::Error(env, instance);
  } else {
    error = Napi::Error::New(env, message);
  }
  if (!detail.empty() && detail != message) error.Set("detail", Napi::String::New(env, detail));
  return error;
}

std::string RootCause(const std::string& message) {
  std::istringstream lines(message);
  std::string line, first, innermost;
  while (std::getline(lines, line)) {
    if (first.empty() && !line.empty()) first = line;
    // TorchScript tracebacks end with the original exception as "RuntimeError: ...", "ValueError: ...".
    auto colon = line.find("Error: ");
    if (colon != std::string::npos && colon > 0 && line.find(' ') > colon) innermost = line;
  }
  std::string picked = innermost.empty() ? first : innermost;
  // Strip c10's "Exception raised from ..." suffix when the message carries one.
  auto raised = picked.find("Exception raised from");
  if (raised != std::string::npos) picked = picked.substr(0, raised);
  while (!picked.empty() && (picked.back() == ' ' || picked.back() == '\n')) picked.pop_back();
  return picked;
}

std::string RootCause(const c10::Error& error) { return RootCause(error.what_without_backtrace()); }

}  // namespace easyroutine
