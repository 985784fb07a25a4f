#include "runtime/threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace easyroutine {

namespace {
std::atomic<int> requested{0};  // 0: libtorch's default

// at::set_num_threads sizes OpenMP's and MKL's pools, not OpenBLAS's own pthread pool (Debian's
// libtorch uses OpenBLAS), whose threads would otherwise keep spinning in sched_yield beside a
// forward told to use fewer threads. Found in the already loaded BLAS; absent elsewhere (MKL builds).
void* FindOpenBlas(const char* name) {
  for (const char* library : {"libblas.so.3", "libopenblas.so.0"}) {
    if (void* handle = dlopen(library, RTLD_LAZY | RTLD_NOLOAD)) {
      if (void* symbol = dlsym(handle, name)) return symbol;
    }
  }
  return nullptr;
}
const auto openBlasSetThreads = reinterpret_cast<void (*)(int)>(FindOpenBlas("openblas_set_num_threads"));
const auto openBlasGetThreads = reinterpret_cast<int (*)()>(FindOpenBlas("openblas_get_num_threads"));
}  // namespace

void SetIntraOpThreads(int count) {
  requested.store(count);
  at::set_num_threads(count);
  if (openBlasSetThreads) openBlasSetThreads(count);
}

int OpenBlasThreads() { return openBlasGetThreads ? openBlasGetThreads() : 0; }

int IntraOpThreads() { return at::get_num_threads(); }

void ApplyIntraOpThreads() {
  int count = requested.load();
  if (count > 0 && at::get_num_threads() != count) at::set_num_threads(count);
}

const std::string& OmpWaitPolicyAtLoad() {
  static const std::string policy = [] {
    const char* value = std::getenv("OMP_WAIT_POLICY");
    return std::string(value ? value : "");
  }();
  return policy;
}

}  // namespace easyroutine
