// Pass: inlines every module and function call of a module's forward into one private graph,
// keeping full module paths.
//
// Guarantees:
// - the graph returned is a copy; the module's own (possibly shared) method graphs are never touched,
//   so instances sharing one ClassType are each inlined from their own call site;
// - every node carries the full dotted path of the module whose code it came from (ModulePathOf;
//   "" for the root), which torch::jit::Inline's call stacks cannot give;
// - bool/int/float/str/None attributes of the known module instances become constants, except names
//   that some method assigns, so that constant propagation removes attribute-driven branches
//   (self.training, config flags); the result is only valid for the attribute values at build time;
// - calls it cannot resolve (interface-typed submodules) stay calls;
// - at each inlined call of a submodule's forward, and at the root's inputs and output, the plan is
//   offered that module's input and output points; wanted ones get a tap at the call boundary: the
//   callee sees its tapped inputs, the caller the tapped outputs.
#pragma once

#include <torch/script.h>

#include <optional>
#include <string>

#include "graph/hook_points.h"

namespace easyroutine {

std::shared_ptr<torch::jit::Graph> InlineModuleCalls(const torch::jit::Module& root, SitePlan& plan);

// The module path a node came from, or nullopt for nodes the inliner did not create.
std::optional<std::string> ModulePathOf(const torch::jit::Node* node);
void SetModulePath(torch::jit::Node* node, const std::string& path);
// Tags every node of `block` (recursively) with `path`.
void SetModulePath(torch::jit::Block* block, const std::string& path);

}  // namespace easyroutine
