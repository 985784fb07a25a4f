#include "threads.h"

#include <ATen/Parallel.h>

#include <atomic>

namespace easyroutine {

namespace {
std::atomic<int> requested{0};  // 0: libtorch's default
}

void SetIntraOpThreads(int count) {
  requested.store(count);
  at::set_num_threads(count);
}

int IntraOpThreads() { return at::get_num_threads(); }

void ApplyIntraOpThreads() {
  int count = requested.load();
  if (count > 0 && at::get_num_threads() != count) at::set_num_threads(count);
}

}  // namespace easyroutine
