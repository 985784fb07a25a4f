#include "inference_thread.h"

namespace easyroutine {

InferenceThread::InferenceThread() : thread_([this] { Run(); }) {}

InferenceThread::~InferenceThread() {
  Stop();
  Join();
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
