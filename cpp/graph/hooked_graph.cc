#include "graph/hooked_graph.h"

#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/peephole.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <chrono>

#include "graph/attention_sites.h"
#include "graph/module_inliner.h"
#include "graph/sdpa_decomposition.h"
#include "graph/tap_op.h"
#include "js/errors.h"

namespace easyroutine {

namespace {

void Clean(std::shared_ptr<torch::jit::Graph>& graph) {
  torch::jit::ConstantPropagationImmutableTypes(graph);
  // Shape peepholes would bake the sizes of a traced example into the graph.
  torch::jit::PeepholeOptimize(graph, /*disable_shape_peepholes=*/true);
  torch::jit::EliminateDeadCode(graph);
}

bool WantsAttentionScores(const SitePlan& plan, const std::string& path) {
  if (plan.all()) return true;
  for (const char* point : {"scores", "pattern"}) {
    if (plan.Requested(HookPointName(path, point))) return true;
  }
  return false;
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

c10::IValue HookedGraph::Run(const torch::jit::Module& module, const std::vector<c10::IValue>& inputs) const {
  torch::jit::Stack stack;
  stack.reserve(inputs.size() + 1);
  stack.emplace_back(module._ivalue());
  stack.insert(stack.end(), inputs.begin(), inputs.end());
  function->run(stack);
  return std::move(stack.front());
}

std::shared_ptr<const HookedGraph> BuildHookedGraph(const torch::jit::Module& module, SitePlan plan, std::vector<std::string>* missing) {
  auto start = std::chrono::steady_clock::now();
  std::shared_ptr<torch::jit::Graph> graph = InlineModuleCalls(module, plan);
  Clean(graph);
  if (DecomposeFusedAttention(*graph, [&](const torch::jit::Node* node) { return WantsAttentionScores(plan, ModulePathOf(node).value_or("")); })) {
    Clean(graph);
  }
  std::map<std::string, std::string> moduleTypes{{"", ModuleTypeName(module)}};
  for (const auto& child : module.named_modules()) moduleTypes[child.name] = ModuleTypeName(child.value);
  TapAttention(*graph, plan, moduleTypes);
  torch::jit::EliminateDeadCode(graph);

  auto hooked = std::make_shared<HookedGraph>();
  const torch::jit::Function& forward = module.get_method("forward").function();
  hooked->function = std::make_shared<torch::jit::GraphFunction>(forward.qualname(), graph, nullptr, torch::jit::ExecutorExecutionMode::SIMPLE);
  hooked->function->setSchema(forward.getSchema());
  hooked->sites = plan.sites();
  for (size_t i = 0; i < hooked->sites.size(); ++i) hooked->siteOf[hooked->sites[i].name] = static_cast<int64_t>(i);
  std::set<int64_t> seen;
  std::function<void(torch::jit::Block*)> order = [&](torch::jit::Block* block) {
    for (torch::jit::Node* node : block->nodes()) {
      if (node->kind() == TapSymbol()) {
        int64_t site = torch::jit::constant_as<int64_t>(node->input(1)).value_or(-1);
        if (site >= 0 && seen.insert(site).second) hooked->executionOrder.push_back(site);
      }
      for (torch::jit::Block* sub : node->blocks()) order(sub);
    }
  };
  order(graph->block());
  if (missing) *missing = plan.Missing();
  hooked->buildMilliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return hooked;
}

std::shared_ptr<const HookedGraph> HookedGraphCache::All(const torch::jit::Module& module) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!all_) all_ = BuildHookedGraph(module, SitePlan::All(), nullptr);
  return all_;
}

void HookedGraphCache::Validate(const torch::jit::Module& module, const std::set<std::string>& names) {
  auto all = All(module);
  for (const auto& name : names) {
    if (all->siteOf.count(name)) continue;
    std::vector<std::string> known;
    for (const auto& site : all->sites) known.push_back(site.name);
    std::string message = "unknown hook point '" + name + "'";
    auto closest = ClosestNames(name, known);
    if (!closest.empty()) {
      message += "; did you mean ";
      for (size_t i = 0; i < closest.size(); ++i) message += (i ? ", '" : "'") + closest[i] + "'";
      message += "?";
    }
    message += " (model.hookPoints() lists all " + std::to_string(known.size()) + ")";
    throw TypedError(ErrorKind::InvalidArgument, message);
  }
}

std::shared_ptr<const HookedGraph> HookedGraphCache::Get(const torch::jit::Module& module, const std::set<std::string>& names) {
  std::string key;
  for (const auto& name : names) key += name + "\n";
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = graphs_.find(key);
    if (found != graphs_.end()) return found->second;
  }
  Validate(module, names);
  std::vector<std::string> missing;
  auto graph = BuildHookedGraph(module, SitePlan::Only(names), &missing);
  if (!missing.empty()) {
    // The full listing found it but this build did not: a bug, not a user error.
    throw TypedError(ErrorKind::Torch, "hook point '" + missing[0] + "' was not found when building the hooked graph");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return graphs_.emplace(key, graph).first->second;
}

void HookedGraphCache::Clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  all_.reset();
  graphs_.clear();
}

std::vector<std::string> ClosestNames(const std::string& name, const std::vector<std::string>& candidates, size_t count) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& candidate : candidates) scored.emplace_back(EditDistance(name, candidate), candidate);
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < count; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace easyroutine
