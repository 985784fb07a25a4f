// Intervention kernels of the easyroutine built-ins (intervention_resid_hook, intervention_heads_hook,
// intervention_attn_mat_hook, ablate_pos_keep_self_attn_hook, multiply_pattern): they return an edited
// copy of the value, so every later reader sees the edit.
//
//   edit_positions  a value [B, T, D] at each row's positions, or one head of [B, H, T, dh]:
//                   multiply by `factor` (ablation: 0) or write `patch` (exactly the selected shape).
//   edit_pattern    one head of an attention pattern or scores [B, H, Q, K]: rows x all keys, all rows x
//                   columns, or a grid of rows x columns; on scores (preSoftmax) an ablation masks with
//                   -inf rather than multiplying by 0; applySoftmax renormalises the head's rows.
#include "hooks/hook_kernel.h"
#include "js/errors.h"
#include "js/js_values.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

namespace {

std::vector<std::vector<int64_t>> RowsOption(const Napi::Value& value, const char* what) {
  std::vector<std::vector<int64_t>> out;
  if (value.IsUndefined() || value.IsNull()) return out;
  if (!value.IsArray()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must be an array (one array of positions per batch row)");
  Napi::Array rows = value.As<Napi::Array>();
  for (uint32_t r = 0; r < rows.Length(); ++r) {
    Napi::Array items = rows.Get(r).As<Napi::Array>();
    std::vector<int64_t> positions;
    for (uint32_t i = 0; i < items.Length(); ++i) positions.push_back(items.Get(i).As<Napi::Number>().Int64Value());
    out.push_back(std::move(positions));
  }
  return out;
}

struct Edit {
  bool patch = false;
  double factor = 0;
  at::Tensor values;  // the patch
};

Edit EditFrom(Napi::Env env, const Napi::Object& options, const char* kernel) {
  Edit edit;
  Napi::Value patch = options.Get("patch");
  if (!patch.IsUndefined() && !patch.IsNull()) {
    edit.patch = true;
    edit.values = TensorHandle::From(env, patch, std::string("nativeHook('") + kernel + "'): options.patch");
  } else {
    Napi::Value factor = options.Get("factor");
    if (!factor.IsUndefined() && !factor.IsNumber()) throw TypedError(ErrorKind::InvalidArgument, std::string("nativeHook('") + kernel + "'): options.factor must be a number");
    edit.factor = factor.IsNumber() ? factor.As<Napi::Number>().DoubleValue() : 0.0;
  }
  return edit;
}

at::Tensor Positions(const std::vector<int64_t>& row, int64_t length, const HookPoint& point, at::Device device) {
  for (int64_t p : row) {
    if (p < 0 || p >= length) throw TypedError(ErrorKind::Index, "position " + std::to_string(p) + " is outside '" + point.name + "' (" + std::to_string(length) + " positions)");
  }
  return torch::tensor(row, torch::kInt64).to(device);
}

void CheckPatch(const at::Tensor& patch, at::IntArrayRef selected, const HookPoint& point) {
  if (patch.sizes() != selected) {
    throw TypedError(ErrorKind::Shape, "patch for '" + point.name + "' is " + ShapeString(patch.sizes()) + "; the selected cells are " + ShapeString(selected));
  }
}

class EditPositionsKernel : public HookKernel {
 public:
  EditPositionsKernel(std::vector<std::vector<int64_t>> rows, int64_t head, Edit edit) : rows_(std::move(rows)), head_(head), edit_(std::move(edit)) {}

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    at::Tensor out = value.clone();
    at::Tensor target = head_ >= 0 ? out : TokensView(out, static_cast<int64_t>(rows_.size()));  // [B, T, ...], a view of `out`
    if (head_ >= 0) {
      if (value.dim() != 4 || head_ >= value.size(1)) {
        throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; head " + std::to_string(head_) + " of [batch, heads, seq, d_head] expected");
      }
      target = out.select(1, head_);  // a view: edits land in `out`
    }
    if (rows_.size() != 1 && static_cast<int64_t>(rows_.size()) != target.size(0)) {
      throw TypedError(ErrorKind::Shape, "positions for '" + point.name + "' have " + std::to_string(rows_.size()) + " rows; the batch has " + std::to_string(target.size(0)));
    }
    at::Tensor patch = edit_.patch ? edit_.values.to(out.device(), out.scalar_type()) : at::Tensor();
    if (edit_.patch) {
      std::vector<int64_t> selected{target.size(0), static_cast<int64_t>(rows_[0].size())};  // rows share one count
      for (int64_t d = 2; d < target.dim(); ++d) selected.push_back(target.size(d));
      CheckPatch(patch, selected, point);
    }
    for (int64_t b = 0; b < target.size(0); ++b) {
      at::Tensor index = Positions(rows_[b % rows_.size()], target.size(1), point, out.device());
      at::Tensor row = target[b];
      if (edit_.patch) {
        row.index_copy_(0, index, patch[b]);
      } else {
        row.index_copy_(0, index, row.index_select(0, index) * edit_.factor);
      }
    }
    return out;
  }

 private:
  std::vector<std::vector<int64_t>> rows_;
  int64_t head_;
  Edit edit_;
};

class EditPatternKernel : public HookKernel {
 public:
  EditPatternKernel(int64_t head, std::vector<std::vector<int64_t>> rows, std::vector<std::vector<int64_t>> columns, Edit edit, bool preSoftmax, bool applySoftmax,
                    bool exceptLastColumn)
      : head_(head), rows_(std::move(rows)), columns_(std::move(columns)), edit_(std::move(edit)), preSoftmax_(preSoftmax), applySoftmax_(applySoftmax),
        exceptLastColumn_(exceptLastColumn) {}

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    if (value.dim() != 4 || head_ < 0 || head_ >= value.size(1)) {
      throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; head " + std::to_string(head_) + " of [batch, heads, query, key] expected");
    }
    at::Tensor out = value.clone();
    at::Tensor head = out.select(1, head_);  // [B, Q, K]
    const int64_t batch = head.size(0);
    for (int64_t b = 0; b < batch; ++b) {
      at::Tensor matrix = head[b];
      at::Tensor rows = rows_.empty() ? at::arange(matrix.size(0), at::TensorOptions().dtype(at::kLong).device(out.device()))
                                      : Positions(rows_.at(b % rows_.size()), matrix.size(0), point, out.device());
      at::Tensor cols = columns_.empty() ? at::arange(matrix.size(1) - (exceptLastColumn_ ? 1 : 0), at::TensorOptions().dtype(at::kLong).device(out.device()))
                                         : Positions(columns_.at(b % columns_.size()), matrix.size(1), point, out.device());
      at::Tensor block = matrix.index_select(0, rows).index_select(1, cols);
      at::Tensor edited;
      if (edit_.patch) {
        at::Tensor patch = edit_.values.to(out.device(), out.scalar_type());
        if (patch.sizes() == matrix.sizes()) {
          // the whole [query, key] matrix, as easyroutine takes it: its selected cells are the patch
          edited = patch.index_select(0, rows).index_select(1, cols);
        } else {
          if (patch.sizes() != block.sizes()) {
            throw TypedError(ErrorKind::Shape, "patch for '" + point.name + "' is " + ShapeString(patch.sizes()) + "; give the selected cells " + ShapeString(block.sizes()) +
                                                   " or the whole [query, key] matrix " + ShapeString(matrix.sizes()));
          }
          edited = patch;
        }
      } else if (preSoftmax_ && edit_.factor == 0.0) {
        edited = at::full_like(block, -std::numeric_limits<double>::infinity());  // an ablation of scores masks the keys
      } else {
        edited = block * edit_.factor;
      }
      at::Tensor updated = matrix.index_select(0, rows);
      updated.index_copy_(1, cols, edited);
      matrix.index_copy_(0, rows, updated);
    }
    if (applySoftmax_) {
      // renormalise the edited head's rows: a softmax over the (edited) scores, or the pattern's rows rescaled to sum to 1
      at::Tensor renormalised = preSoftmax_ ? head.softmax(-1) : head / head.sum(-1, /*keepdim=*/true).clamp_min(1e-12);
      head.copy_(renormalised);
    }
    return out;
  }

 private:
  int64_t head_;
  std::vector<std::vector<int64_t>> rows_, columns_;
  Edit edit_;
  bool preSoftmax_, applySoftmax_;
  bool exceptLastColumn_;  // ablate_pos_keep_self_attn_hook: every key but the last
};

int64_t IntOption(const Napi::Object& options, const char* name, int64_t fallback) {
  Napi::Value value = options.Get(name);
  return value.IsNumber() ? value.As<Napi::Number>().Int64Value() : fallback;
}

}  // namespace

EASYROUTINE_REGISTER_KERNEL(edit_positions, "edit_positions",
                            "multiplies ({factor}) or patches ({patch}) the value at each row's positions ({positions, head?})",
                            [](Napi::Env env, const Napi::Object& options) {
                              auto rows = RowsOption(options.Get("positions"), "positions");
                              if (rows.empty()) throw TypedError(ErrorKind::InvalidArgument, "nativeHook('edit_positions'): options.positions is required");
                              return std::make_shared<EditPositionsKernel>(rows, IntOption(options, "head", -1), EditFrom(env, options, "edit_positions"));
                            });

EASYROUTINE_REGISTER_KERNEL(edit_pattern, "edit_pattern",
                            "multiplies or patches one head's pattern/scores at rows x columns ({head, rows?, columns?, factor | patch, preSoftmax?, applySoftmax?})",
                            [](Napi::Env env, const Napi::Object& options) {
                              int64_t head = IntOption(options, "head", -1);
                              if (head < 0) throw TypedError(ErrorKind::InvalidArgument, "nativeHook('edit_pattern'): options.head must be a non-negative integer");
                              return std::make_shared<EditPatternKernel>(head, RowsOption(options.Get("rows"), "rows"), RowsOption(options.Get("columns"), "columns"),
                                                                         EditFrom(env, options, "edit_pattern"), options.Get("preSoftmax").ToBoolean().Value(),
                                                                         options.Get("applySoftmax").ToBoolean().Value(), options.Get("exceptLastColumn").ToBoolean().Value());
                            });

}  // namespace easyroutine
