// Hook points: the named places of a model's forward where a hook can run, and the plan that says
// which of them a hooked graph taps.
//
// Names: "<module path>:<point>", e.g. "transformer.h.0.attn:output", "model.layers.1.self_attn:pattern";
// the root module's points have no path ("input", "output"). Module points are "input" (the hidden
// states when the forward takes several tensors: the argument called hidden_states, else the first;
// each other is "input.<arg>") and "output" (".<index>" / ".<key>" for tuple and dict outputs).
// Attention points are "queries", "keys", "values" ([batch, heads, seq, d_head]; keys and values with
// the model's key/value heads), "scores" (pre-softmax, mask applied), "pattern" (post-softmax, the
// value that multiplies V) and "head_output" (pattern @ V, before the heads are merged).
#pragma once

#include <torch/script.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace easyroutine {

struct HookPoint {
  std::string name;
  std::string modulePath;
  std::string moduleType;
  std::string kind;  // input, output, queries, keys, values, scores, pattern, head_output
  int layer = -1;    // the first integer component of the module path, -1 when there is none
};

std::string HookPointName(const std::string& modulePath, const std::string& point);

// "__torch__.model.___torch_mangle_3.Block" -> "model.Block"
std::string ModuleTypeName(const torch::jit::Module& module);
// "transformer.h.3.attn" -> 3
int LayerIndex(const std::string& modulePath);

// Which hook points a graph build taps. Every point found is offered to Want(); the plan numbers the
// wanted ones (a point met at several call sites keeps one number).
class SitePlan {
 public:
  static SitePlan All();
  static SitePlan Only(std::set<std::string> names);

  // The site number of `point`, or nullopt when it is not wanted.
  std::optional<int64_t> Want(const HookPoint& point);
  bool Requested(const std::string& name) const { return all_ || requested_.count(name) > 0; }
  bool all() const { return all_; }
  const std::vector<HookPoint>& sites() const { return sites_; }
  // Requested names no build step found.
  std::vector<std::string> Missing() const;

 private:
  bool all_ = false;
  std::set<std::string> requested_;
  std::vector<HookPoint> sites_;
  std::map<std::string, int64_t> index_;
};

}  // namespace easyroutine
