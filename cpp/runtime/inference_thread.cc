#include "runtime/inference_thread.h"

#include <atomic>
#include <cstdlib>
#include <set>

namespace easyroutine {

namespace {

struct LiveThreads {
  std::mutex mutex;
  std::set<InferenceThread*> threads;
  std::atomic<bool> exiting{false};
};

LiveThreads& Live() {
  static LiveThreads* live = new LiveThreads();  // never destroyed: used from the atexit handler
  return *live;
}

void JoinAllAtExit() {
  LiveThreads& live = Live();
  live.exiting.store(true);
  std::lock_guard<std::mutex> lock(live.mutex);
  for (InferenceThread* thread : live.threads) {
    thread->Stop();
    thread->Join();
  }
}

}  // namespace

bool InferenceThread::ProcessExiting() { return Live().exiting.load(); }

void InferenceThread::StopAllForExit() { JoinAllAtExit(); }

InferenceThread::InferenceThread() {
  static const bool registered = (std::atexit(&JoinAllAtExit), true);
  (void)registered;
  {
    std::lock_guard<std::mutex> lock(Live().mutex);
    Live().threads.insert(this);
  }
  thread_ = std::thread([this] { Run(); });
}

InferenceThread::~InferenceThread() {
  Stop();
  Join();
  std::lock_guard<std::mutex> lock(Live().mutex);
  Live().threads.erase(this);
}

void InferenceThread::Post(std::function<void(bool)> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(job));
      wake_.notify_one();
      return;
    }
  }
  job(true);
}

void InferenceThread::Stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  wake_.notify_one();
}

void InferenceThread::Join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void InferenceThread::Run() {
  for (;;) {
    std::function<void(bool)> job;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      stopping = stopping_;
    }
    job(stopping);
  }
}

}  // namespace easyroutine
