#include "graph/hook_points.h"

#include <cctype>
#include <regex>

namespace easyroutine {

std::string HookPointName(const std::string& modulePath, const std::string& point) {
  return modulePath.empty() ? point : modulePath + ":" + point;
}

std::string ModuleTypeName(const torch::jit::Module& module) {
  auto name = module.type()->name();
  if (!name) return "Module";
  static const std::regex kNoise("(^__torch__\\.)|(___torch_mangle_[0-9]+\\.)");
  return std::regex_replace(name->qualifiedName(), kNoise, "");
}

int LayerIndex(const std::string& modulePath) {
  size_t start = 0;
  while (start <= modulePath.size()) {
    size_t end = modulePath.find('.', start);
    if (end == std::string::npos) end = modulePath.size();
    if (end > start && end - start < 9) {
      bool digits = true;
      for (size_t i = start; i < end; ++i) digits = digits && std::isdigit(static_cast<unsigned char>(modulePath[i]));
      if (digits) return std::stoi(modulePath.substr(start, end - start));
    }
    start = end + 1;
  }
  return -1;
}

SitePlan SitePlan::All() {
  SitePlan plan;
  plan.all_ = true;
  return plan;
}

SitePlan SitePlan::Only(std::set<std::string> names) {
  SitePlan plan;
  plan.requested_ = std::move(names);
  return plan;
}

std::optional<int64_t> SitePlan::Want(const HookPoint& point) {
  auto found = index_.find(point.name);
  if (found != index_.end()) return found->second;
  if (!Requested(point.name)) return std::nullopt;
  auto site = static_cast<int64_t>(sites_.size());
  sites_.push_back(point);
  index_.emplace(point.name, site);
  return site;
}

std::vector<std::string> SitePlan::Missing() const {
  std::vector<std::string> missing;
  for (const auto& name : requested_) {
    if (!index_.count(name)) missing.push_back(name);
  }
  return missing;
}

}  // namespace easyroutine
