#include "graph/module_inliner.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>

#include <set>
#include <unordered_map>

#include "graph/tap_op.h"

namespace easyroutine {

namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;
using torch::jit::WithInsertPoint;

// Paths are stored as scope names with a leading '/' so that the root ("/") differs from untagged.
constexpr char kPathMark = '/';

std::string JoinPath(const std::string& parent, const std::string& name) { return parent.empty() ? name : parent + "." + name; }

bool IsTensor(const c10::TypePtr& type) { return type->kind() == c10::TypeKind::TensorType; }

// The input point names of a forward's tensor arguments (indices into `arguments`): the hidden
// states are "input" (the argument called hidden_states, else the first tensor), so that a block's
// residual input has the same name whatever else it takes (Hugging Face decoder layers also take
// masks and position embeddings); each other tensor is "input.<argument name>".
std::vector<std::string> InputPointNames(const std::vector<c10::Argument>& arguments, const std::vector<size_t>& tensorArgs) {
  size_t primary = tensorArgs.empty() ? 0 : tensorArgs.front();
  for (size_t i : tensorArgs) {
    if (arguments[i].name() == "hidden_states") primary = i;
  }
  std::vector<std::string> names;
  for (size_t i : tensorArgs) names.push_back(i == primary ? "input" : "input." + arguments[i].name());
  return names;
}

struct ModuleRef {
  std::string path;
  torch::jit::Module module;
};
using ModuleValues = std::unordered_map<Value*, ModuleRef>;

class ModuleInliner {
 public:
  ModuleInliner(const torch::jit::Module& root, SitePlan& plan) : root_(root), plan_(plan) { CollectAssignedAttributes(); }

  std::shared_ptr<Graph> Run() {
    const torch::jit::Function& forward = root_.get_method("forward").function();
    std::shared_ptr<Graph> graph = torch::jit::toGraphFunction(forward).graph()->copy();
    ProcessGraph(*graph, ModuleRef{"", root_});
    TapRootBoundary(*graph, forward.getSchema());
    return graph;
  }

 private:
  void CollectAssignedAttributes() {
    std::function<void(Block*)> scan = [&](Block* block) {
      for (Node* node : block->nodes()) {
        if (node->kind() == c10::prim::SetAttr) assigned_.insert(node->s(c10::attr::name));
        for (Block* sub : node->blocks()) scan(sub);
      }
    };
    for (const auto& module : root_.modules()) {
      for (const auto& method : module.get_methods()) {
        if (auto* fn = torch::jit::tryToGraphFunction(method.function())) scan(fn->graph()->block());
      }
    }
  }

  // `self` is nullopt for free functions (they run in their caller's module).
  void ProcessGraph(Graph& graph, const std::optional<ModuleRef>& self, const std::string& functionPath = {}) {
    const std::string& path = self ? self->path : functionPath;
    SetModulePath(graph.block(), path);
    ModuleValues modules;
    if (self) modules.emplace(graph.inputs()[0], *self);
    ProcessBlock(graph.block(), path, modules);
  }

  void ProcessBlock(Block* block, const std::string& path, ModuleValues& modules) {
    for (auto it = block->nodes().begin(); it != block->nodes().end();) {
      Node* node = *it++;  // inlining inserts before `node` and destroys it: step past it first
      if (node->kind() == c10::prim::GetAttr) {
        FollowOrFoldAttribute(node, modules);
      } else if (node->kind() == c10::prim::CallMethod) {
        auto target = modules.find(node->input(0));
        if (target != modules.end()) InlineMethodCall(node, target->second, path);
      } else if (node->kind() == c10::prim::CallFunction) {
        InlineFunctionCall(node, path);
      } else {
        for (Block* sub : node->blocks()) ProcessBlock(sub, path, modules);
      }
    }
  }

  void FollowOrFoldAttribute(Node* node, ModuleValues& modules) {
    auto owner = modules.find(node->input(0));
    if (owner == modules.end()) return;
    const std::string name = node->s(c10::attr::name);
    if (!owner->second.module.hasattr(name)) return;
    c10::IValue value = owner->second.module.attr(name);
    if (value.isObject() && value.toObjectRef().type()->is_module()) {
      modules.emplace(node->output(), ModuleRef{JoinPath(owner->second.path, name), torch::jit::Module(value.toObject())});
      return;
    }
    if (assigned_.count(name)) return;
    if (value.isBool() || value.isInt() || value.isDouble() || value.isString() || value.isNone()) {
      Graph& graph = *node->owningGraph();
      WithInsertPoint guard(node);
      Value* constant = graph.insertConstant(value);
      constant->node()->setScope(node->scope());
      node->output()->replaceAllUsesWith(constant);
      node->destroy();
    }
  }

  void InlineMethodCall(Node* call, const ModuleRef& target, const std::string& callerPath) {
    const std::string method = call->s(c10::attr::name);
    auto found = target.module.find_method(method);
    if (!found) return;
    torch::jit::GraphFunction* function = torch::jit::tryToGraphFunction(found->function());
    if (!function) return;
    std::shared_ptr<Graph> callee = function->graph()->copy();
    ProcessGraph(*callee, target);

    Graph& graph = *call->owningGraph();
    const bool boundary = method == "forward" && target.path != callerPath;
    std::string type = boundary ? ModuleTypeName(target.module) : std::string();
    std::vector<Value*> inputs(call->inputs().begin(), call->inputs().end());
    WithInsertPoint guard(call);
    if (boundary) {
      const auto& arguments = function->getSchema().arguments();
      std::vector<size_t> tensorArgs;
      for (size_t i = 1; i < inputs.size() && i < arguments.size(); ++i) {
        if (IsTensor(arguments[i].type()) && IsTensor(inputs[i]->type())) tensorArgs.push_back(i);
      }
      const std::vector<std::string> names = InputPointNames(arguments, tensorArgs);
      for (size_t n = 0; n < tensorArgs.size(); ++n) {
        const size_t i = tensorArgs[n];
        if (auto site = plan_.Want(Point(target.path, type, names[n], "input"))) {
          inputs[i] = InsertTap(graph, inputs[i], *site);
          SetModulePath(inputs[i]->node(), callerPath);
        }
      }
    }
    std::vector<Value*> outputs = torch::jit::insertGraph(graph, *callee, inputs);
    for (size_t i = 0; i < outputs.size() && i < call->outputs().size(); ++i) {
      Value* output = boundary ? TapOutput(graph, outputs[i], target.path, type, callerPath) : outputs[i];
      call->output(i)->replaceAllUsesWith(output);
    }
    call->destroy();
  }

  void InlineFunctionCall(Node* call, const std::string& path) {
    auto functionType = call->input(0)->type()->cast<c10::FunctionType>();
    if (!functionType) return;
    torch::jit::GraphFunction* function = torch::jit::tryToGraphFunction(*functionType->function());
    if (!function) return;
    std::shared_ptr<Graph> callee = function->graph()->copy();
    ProcessGraph(*callee, std::nullopt, path);
    Graph& graph = *call->owningGraph();
    WithInsertPoint guard(call);
    std::vector<Value*> inputs(call->inputs().begin() + 1, call->inputs().end());
    std::vector<Value*> outputs = torch::jit::insertGraph(graph, *callee, inputs);
    for (size_t i = 0; i < outputs.size() && i < call->outputs().size(); ++i) call->output(i)->replaceAllUsesWith(outputs[i]);
    call->destroy();
  }

  HookPoint Point(const std::string& path, const std::string& type, const std::string& point, const std::string& kind) const {
    return HookPoint{HookPointName(path, point), path, type, kind, LayerIndex(path)};
  }

  // Taps the tensors of a module's output at the insertion point; tuple and dict outputs by element.
  Value* TapOutput(Graph& graph, Value* value, const std::string& path, const std::string& type, const std::string& tagPath) {
    auto tap = [&](Value* element, const std::string& point) -> Value* {
      auto site = plan_.Want(Point(path, type, point, "output"));
      if (!site) return element;
      Value* tapped = InsertTap(graph, element, *site);
      SetModulePath(tapped->node(), tagPath);
      return tapped;
    };
    if (IsTensor(value->type())) return tap(value, "output");
    Node* producer = value->node();
    if (auto tuple = value->type()->cast<c10::TupleType>()) {
      const auto& elements = tuple->elements();
      if (producer->kind() == c10::prim::TupleConstruct) {
        WithInsertPoint guard(producer);
        for (size_t i = 0; i < producer->inputs().size(); ++i) {
          if (IsTensor(producer->input(i)->type())) producer->replaceInput(i, tap(producer->input(i), "output." + std::to_string(i)));
        }
        return value;
      }
      bool any = false;
      for (size_t i = 0; i < elements.size(); ++i) {
        any = (IsTensor(elements[i]) && (plan_.all() || plan_.Requested(HookPointName(path, "output." + std::to_string(i))))) || any;
      }
      if (!any) return value;
      Node* unpack = graph.insertNode(graph.createTupleUnpack(value));
      SetModulePath(unpack, tagPath);
      std::vector<Value*> items(unpack->outputs().begin(), unpack->outputs().end());
      for (size_t i = 0; i < items.size(); ++i) {
        if (IsTensor(elements[i])) items[i] = tap(items[i], "output." + std::to_string(i));
      }
      Node* pack = graph.insertNode(graph.createTuple(items, tuple));
      SetModulePath(pack, tagPath);
      return pack->output();
    }
    if (producer->kind() == c10::prim::DictConstruct) {
      WithInsertPoint guard(producer);
      for (size_t i = 0; i + 1 < producer->inputs().size(); i += 2) {
        auto key = torch::jit::toIValue(producer->input(i));
        if (key && key->isString() && IsTensor(producer->input(i + 1)->type())) {
          producer->replaceInput(i + 1, tap(producer->input(i + 1), "output." + key->toStringRef()));
        }
      }
    }
    return value;
  }

  void TapRootBoundary(Graph& graph, const c10::FunctionSchema& schema) {
    const std::string type = ModuleTypeName(root_);
    const auto& arguments = schema.arguments();
    std::vector<size_t> tensorArgs;
    for (size_t i = 1; i < graph.inputs().size() && i < arguments.size(); ++i) {
      if (IsTensor(arguments[i].type())) tensorArgs.push_back(i);
    }
    const std::vector<std::string> names = InputPointNames(arguments, tensorArgs);
    for (size_t n = 0; n < tensorArgs.size(); ++n) {
      const size_t i = tensorArgs[n];
      auto site = plan_.Want(Point("", type, names[n], "input"));
      if (!site) continue;
      Value* input = graph.inputs()[i];
      WithInsertPoint guard(graph.block()->nodes().front());
      Value* tapped = InsertTap(graph, input, *site);
      SetModulePath(tapped->node(), "");
      input->replaceAllUsesAfterNodeWith(tapped->node(), tapped);
    }
    WithInsertPoint guard(graph.return_node());
    Value* output = TapOutput(graph, graph.outputs()[0], "", type, "");
    graph.return_node()->replaceInput(0, output);
  }

  const torch::jit::Module& root_;
  SitePlan& plan_;
  std::set<std::string> assigned_;
};

}  // namespace

std::shared_ptr<Graph> InlineModuleCalls(const torch::jit::Module& root, SitePlan& plan) { return ModuleInliner(root, plan).Run(); }

std::optional<std::string> ModulePathOf(const Node* node) {
  const auto& scope = const_cast<Node*>(node)->scope();  // scope() is not const in libtorch 1.13
  if (!scope || scope->isRoot()) return std::nullopt;
  std::string name = scope->name().toUnqualString();
  if (name.empty() || name[0] != kPathMark) return std::nullopt;
  return name.substr(1);
}

void SetModulePath(Node* node, const std::string& path) {
  node->setScope(c10::make_intrusive<torch::jit::Scope>()->push(c10::Symbol::scope(std::string(1, kPathMark) + path)));
}

void SetModulePath(Block* block, const std::string& path) {
  auto scope = c10::make_intrusive<torch::jit::Scope>()->push(c10::Symbol::scope(std::string(1, kPathMark) + path));
  std::function<void(Block*)> tag = [&](Block* b) {
    for (Node* node : b->nodes()) {
      node->setScope(scope);
      for (Block* sub : node->blocks()) tag(sub);
    }
  };
  tag(block);
}

}  // namespace easyroutine
