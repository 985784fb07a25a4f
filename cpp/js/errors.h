// Typed errors across the boundary. C++ code throws TypedError (or lets torch throw c10::Error);
// Guarded() converts both into instances of the JS error classes registered from lib/core/errors.ts,
// so callers can rely on `instanceof` and `code`.
#pragma once

#include <napi.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/frontend/error_report.h>

#include <stdexcept>
#include <string>

namespace easyroutine {

// Order matches ERROR_CLASS_NAMES in errors.cc and the object lib/core/errors.ts registers.
enum class ErrorKind {
  InvalidArgument,
  DType,
  Shape,
  Index,
  Device,
  Disposed,
  ModelLoad,
  Forward,
  Torch,
  Aborted,
  Count,
};

class TypedError : public std::runtime_error {
 public:
  TypedError(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// The JS error object for `kind`, falling back to a plain Error before classes are registered.
// `detail` (e.g. torch's full TorchScript traceback) is attached as the `detail` property.
Napi::Error MakeError(Napi::Env env, ErrorKind kind, const std::string& message, const std::string& detail = {});

// The line of a torch error message a user needs: the innermost "SomethingError: ..." line of a
// TorchScript traceback, else the first line, without C++ backtraces.
std::string RootCause(const c10::Error& error);
std::string RootCause(const std::string& message);

// The message of a TorchScript compilation error. Never call ErrorReport::what(): it renders source
// ranges read lazily from the archive, and for a damaged archive that read throws inside a noexcept
// function, which terminates the process.
std::string CompilationMessage(const torch::jit::ErrorReport& report);

// Runs `body`, turning C++ failures into JS exceptions. Torch errors become `fallback` (an
// out-of-range index becomes Index) with `context` prefixed to say which call failed. `context` is a
// C string: every call into the addon passes through here, and a std::string would be made each time.
template <typename F>
auto Guarded(Napi::Env env, ErrorKind fallback, const char* context, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const TypedError& e) {
    throw MakeError(env, e.kind(), e.what());
  } catch (const torch::jit::ErrorReport& e) {
    throw MakeError(env, fallback, std::string(context) + ": " + RootCause(CompilationMessage(e)));
  } catch (const c10::IndexError& e) {
    throw MakeError(env, ErrorKind::Index, std::string(context) + ": " + RootCause(e), e.what_without_backtrace());
  } catch (const c10::Error& e) {
    throw MakeError(env, fallback, std::string(context) + ": " + RootCause(e), e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw MakeError(env, fallback, std::string(context) + ": " + RootCause(std::string(e.what())), e.what());
  }
}

}  // namespace easyroutine
