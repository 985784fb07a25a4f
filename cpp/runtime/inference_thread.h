// One dedicated thread per model for async forwards: long forwards (and, later, forwards waiting on
// JS hooks) never occupy libuv's small pool that fs, dns and crypto depend on.
//
// process.exit() runs no environment cleanup hooks on the main thread: it goes straight to exit(),
// whose static destructors tear libtorch down. A forward still running then would crash, so every
// live inference thread is registered (process-wide, as exit is) and joined by an atexit handler
// that runs before libtorch's destructors.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace easyroutine {

class InferenceThread {
 public:
  InferenceThread();
  ~InferenceThread();  // Stop() + Join()
  InferenceThread(const InferenceThread&) = delete;
  InferenceThread& operator=(const InferenceThread&) = delete;

  // Queues `job`. A job gets `true` when it must only clean up (the thread is stopping).
  void Post(std::function<void(bool stopping)> job);
  // Queued jobs still run, each told it is stopping; no new job is accepted.
  void Stop();
  void Join();

  // True once the process is exiting (process.exit() or the end of main): jobs must then only
  // clean up, without calling into JS.
  static bool ProcessExiting();
  // Marks the process as exiting and joins every inference thread (a forward waiting on a JS hook
  // gives up). Called from the main thread's JS 'exit' event, while libtorch is still whole: the
  // atexit handler comes too late when libtorch's lazily built statics (constructed after it was
  // registered, so destroyed before it runs) are still in use by a running forward.
  static void StopAllForExit();

 private:
  void Run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void(bool)>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace easyroutine
