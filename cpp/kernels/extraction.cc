// Extraction kernels of the easyroutine built-ins: values at token positions, with no JS per call.
//
//   positions  save_resid_hook / query_key_value_hook / embed_hook / avg_hook: the value at each
//              row's positions, optionally averaged per position group and over the batch.
//              layout 'tokens' ([B, T, D] -> [B, n, D]), 'heads' ([B, H, T, dh] -> [B, n, H * dh])
//              or 'per_head' ([B, H, T, dh] -> one [B, n, dh] per head).
//   pattern    attention_pattern_head: per head, the pattern at the positions ([B, n, n]) or its
//              blocks (row groups x column groups) reduced by mean, sum or baseline_ratio.
//   project_heads  head_out / projected vectors: per head, the vectors at the positions times the
//              head's block of W_O, [B, n, d_model] (see ProjectHeadsKernel).
//   statistics compute_statistics: mean, variance (E[x^2] - E[x]^2) and second moment over the
//              last dimension at the positions, each [B, n].
//
// Positions come per batch row (rows may be padded differently), as absolute indices.
#include <algorithm>
#include <mutex>

#include "hooks/hook_kernel.h"
#include "kernels/plain_copy.h"
#include "js/errors.h"
#include "js/js_values.h"
#include "tensor/tensor_handle.h"

namespace easyroutine {

namespace {

std::vector<std::vector<int64_t>> Rows(const Napi::Value& value, const char* what) {
  if (!value.IsArray()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must be an array (one array of positions per batch row)");
  Napi::Array rows = value.As<Napi::Array>();
  std::vector<std::vector<int64_t>> out;
  for (uint32_t r = 0; r < rows.Length(); ++r) {
    Napi::Value row = rows.Get(r);
    if (!row.IsArray()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " row " + std::to_string(r) + " must be an array of integers");
    Napi::Array items = row.As<Napi::Array>();
    std::vector<int64_t> positions;
    for (uint32_t i = 0; i < items.Length(); ++i) {
      Napi::Value item = items.Get(i);
      if (!item.IsNumber()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must hold integers");
      positions.push_back(item.As<Napi::Number>().Int64Value());
    }
    if (!out.empty() && positions.size() != out[0].size()) {
      throw TypedError(ErrorKind::Shape, std::string(what) + ": every batch row must have the same number of positions");
    }
    out.push_back(std::move(positions));
  }
  if (out.empty()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must have one row per batch row");
  return out;
}

std::vector<int64_t> Sizes(const Napi::Value& value, const char* what) {
  std::vector<int64_t> out;
  if (value.IsUndefined() || value.IsNull()) return out;
  if (!value.IsArray()) throw TypedError(ErrorKind::InvalidArgument, std::string(what) + " must be an array of group sizes");
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) out.push_back(array.Get(i).As<Napi::Number>().Int64Value());
  return out;
}

// What every forward checks about a kernel's fixed positions, worked out once: their range, and
// whether each row is 0 .. n - 1 (a whole value then is one copy).
struct RowFacts {
  int64_t count = 0;  // positions per row
  int64_t lowest = 0;
  int64_t highest = -1;
  bool iota = true;
  // Whether every row selects 0 .. length - 1 in order: the selection is then the whole value.
  bool SelectsAll(int64_t length) const { return iota && count == length; }
};

RowFacts FactsOf(const std::vector<std::vector<int64_t>>& rows) {
  RowFacts facts;
  facts.count = rows.empty() ? 0 : static_cast<int64_t>(rows[0].size());
  bool first = true;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      facts.lowest = first ? row[i] : std::min(facts.lowest, row[i]);
      facts.highest = first ? row[i] : std::max(facts.highest, row[i]);
      first = false;
      if (row[i] != static_cast<int64_t>(i)) facts.iota = false;
    }
  }
  return facts;
}

// Checks that `given` has one row per batch row (or one row for all) and positions in [0, length);
// `facts` (of `given`) answer at once when they are.
void CheckRows(const std::vector<std::vector<int64_t>>& given, int64_t batch, int64_t length, const HookPoint& point, const RowFacts* facts = nullptr) {
  if (given.size() != 1 && static_cast<int64_t>(given.size()) != batch) {
    throw TypedError(ErrorKind::Shape, "positions for '" + point.name + "' have " + std::to_string(given.size()) + " rows; the batch has " + std::to_string(batch));
  }
  if (facts && facts->lowest >= 0 && facts->highest < length) return;
  for (const auto& row : given) {
    for (int64_t p : row) {
      if (p < 0 || p >= length) throw TypedError(ErrorKind::Index, "position " + std::to_string(p) + " is outside '" + point.name + "' (" + std::to_string(length) + " positions)");
    }
  }
}

// [B, n] indices on `device`, checked against the batch size and the sequence length.
// One row of positions serves every batch row.
at::Tensor IndexTensor(const std::vector<std::vector<int64_t>>& given, int64_t batch, int64_t length, const HookPoint& point, at::Device device) {
  CheckRows(given, batch, length, point);
  const int64_t n = static_cast<int64_t>(given[0].size());
  std::vector<int64_t> flat;
  flat.reserve(static_cast<size_t>(batch * n));
  for (int64_t b = 0; b < batch; ++b) {
    const auto& row = given[static_cast<size_t>(b) % given.size()];
    flat.insert(flat.end(), row.begin(), row.end());
  }
  return torch::tensor(flat, torch::kInt64).view({batch, n}).to(device);
}

// `sequenceLength` > 0: the positions are those of an input of that length, and a value whose
// `found` positions differ is an error (CPM-Ant prepends prompt tokens, ProphetNet runs n-gram streams
// side by side: no input position addresses their hidden states). `what` says which positions.
void CheckSequenceLength(int64_t found, int64_t sequenceLength, const HookPoint& point, const char* what) {
  if (sequenceLength <= 0 || found == sequenceLength) return;
  throw TypedError(ErrorKind::Shape, "'" + point.name + "' has " + std::to_string(found) + " " + what + " where the input has " + std::to_string(sequenceLength) +
                                         ": this model's sequence is not its input's (it adds positions of its own), so token positions do not address it; hook '" +
                                         point.name + "' itself");
}

// The [B, n] index tensor of a kernel's fixed positions, built once per batch size and device (each
// small aten op costs microseconds, which add up over every hook of every forward).
class CachedIndex {
 public:
  const at::Tensor& Get(const std::vector<std::vector<int64_t>>& rows, int64_t batch, int64_t length, const HookPoint& point, at::Device device) {
    if (!index_.defined() || index_.size(0) != batch || index_.device() != device || length != length_) {
      index_ = IndexTensor(rows, batch, length, point, device);
      length_ = length;
    }
    return index_;
  }
  void Clear() { index_ = at::Tensor(); }

 private:
  at::Tensor index_;
  int64_t length_ = -1;
};

// [[head, tensor], ...] for JS: the per-head results of the pattern and projection kernels.
Napi::Value HeadResults(ResultWriter& writer, const std::vector<std::pair<int64_t, at::Tensor>>& results) {
  Napi::Env env = writer.Env();
  Napi::Array out = Napi::Array::New(env, results.size());
  for (size_t i = 0; i < results.size(); ++i) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Number::New(env, static_cast<double>(results[i].first)));
    pair.Set(1u, writer.Tensor(results[i].second.contiguous()));
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

// avg_attention_pattern_head's running mean: after `batches` earlier batches, averages[i] (head
// `head`) moves to avg + (batchMean - avg) / (batches + 1); every batch must give the same shape.
void UpdateRunningMean(std::vector<std::pair<int64_t, at::Tensor>>& averages, size_t i, int64_t head, const at::Tensor& batchMean, int64_t batches,
                       const HookPoint& point) {
  if (batches == 0) {
    averages.emplace_back(head, batchMean);
    return;
  }
  at::Tensor& average = averages[i].second;
  if (average.sizes() != batchMean.sizes()) {
    throw TypedError(ErrorKind::Shape, "running mean of '" + point.name + "': this batch gives " + ShapeString(batchMean.sizes()) + ", earlier ones " + ShapeString(average.sizes()));
  }
  average = average + (batchMean - average) / static_cast<double>(batches + 1);
}

// Means of consecutive groups along dim 1 (sizes sum to its length).
at::Tensor GroupMeans(const at::Tensor& value, const std::vector<int64_t>& groups) {
  std::vector<at::Tensor> means;
  int64_t start = 0;
  for (int64_t size : groups) {
    means.push_back(value.narrow(1, start, size).mean(1, /*keepdim=*/true));
    start += size;
  }
  return at::cat(means, 1);
}

// A kernel whose results are one tensor per head: [[head, tensor], ...] for JS, the tensors in head
// order for a KernelGroup.
class HeadResultsKernel : public HookKernel, public CollectingKernel {
 public:
  Napi::Value Results(ResultWriter& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return HeadResults(out, results_);
  }

  void Collect(std::vector<at::Tensor>& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [head, tensor] : results_) out.push_back(tensor.contiguous());
  }

  void Reset() override {
    std::lock_guard<std::mutex> lock(mutex_);
    results_.clear();
  }

 protected:
  std::mutex mutex_;
  std::vector<std::pair<int64_t, at::Tensor>> results_;
};

class PositionsKernel : public HookKernel, public CollectingKernel {
 public:
  // `inputLength` > 0: the positions are those of an input of that length, and a value with fewer
  // positions holds the last ones (a model that returns logits for the last position only).
  // `sequenceLength`: see CheckSequenceLength.
  PositionsKernel(std::vector<std::vector<int64_t>> rows, std::vector<int64_t> groups, std::string layout, bool avgOverExample, int64_t inputLength = 0,
                  int64_t sequenceLength = 0)
      : rows_(std::move(rows)),
        facts_(FactsOf(rows_)),
        groups_(std::move(groups)),
        layout_(std::move(layout)),
        avgOverExample_(avgOverExample),
        inputLength_(inputLength),
        sequenceLength_(sequenceLength) {}

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    at::Tensor tokens;  // [B, T, ...]
    bool flatten = false;  // 'heads': [B, T, H, dh] read as [B, T, H * dh]
    if (layout_ == "tokens") {
      tokens = TokensView(value, static_cast<int64_t>(rows_.size()));
      if (tokens.dim() < 3) throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; expected [batch, seq, ...]");
    } else {
      if (value.dim() != 4) throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; expected [batch, heads, seq, d_head]");
      tokens = value.transpose(1, 2);  // [B, T, H, dh]
      flatten = layout_ == "heads";
    }
    CheckSequenceLength(tokens.size(1), sequenceLength_, point, "positions");
    const bool endAligned = inputLength_ > 0 && tokens.size(1) < inputLength_;
    at::Tensor out;
    if (PlainCopyable(tokens)) {
      if (endAligned) {
        const auto rows = EndAligned(tokens.size(1), point);
        CheckRows(rows, tokens.size(0), tokens.size(1), point);
        out = GatherTokens(tokens, rows, FactsOf(rows).iota, flatten);
      } else {
        CheckRows(rows_, tokens.size(0), tokens.size(1), point, &facts_);
        out = GatherTokens(tokens, rows_, facts_.iota, flatten);
      }
    } else {
      if (flatten) tokens = tokens.reshape({value.size(0), value.size(2), value.size(1) * value.size(3)});
      if (endAligned) {
        out = GatherPositions(tokens, IndexTensor(EndAligned(tokens.size(1), point), tokens.size(0), tokens.size(1), point, tokens.device()));
      } else if (facts_.SelectsAll(tokens.size(1))) {
        out = tokens.detach().clone();
      } else {
        std::lock_guard<std::mutex> lock(mutex_);
        out = GatherPositions(tokens, index_.Get(rows_, tokens.size(0), tokens.size(1), point, tokens.device()));
      }
    }
    if (!groups_.empty()) out = GroupMeans(out, groups_);
    if (avgOverExample_) out = out.mean(0, /*keepdim=*/true);
    std::lock_guard<std::mutex> lock(mutex_);
    result_ = out;
    return {};
  }

  // 'per_head': one tensor per head; otherwise the tensor (undefined before a forward).
  Napi::Value Results(ResultWriter& out) override {
    std::vector<at::Tensor> tensors;
    Collect(tensors);
    if (tensors.empty()) return out.Env().Undefined();
    if (layout_ != "per_head") return out.Tensor(tensors[0]);
    Napi::Array heads = Napi::Array::New(out.Env(), tensors.size());
    for (size_t h = 0; h < tensors.size(); ++h) heads.Set(static_cast<uint32_t>(h), out.Tensor(tensors[h]));
    return heads;
  }

  void Collect(std::vector<at::Tensor>& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!result_.defined()) return;
    if (layout_ != "per_head") {
      out.push_back(result_);
      return;
    }
    for (int64_t h = 0; h < result_.size(2); ++h) out.push_back(result_.select(2, h).contiguous());
  }

  void Reset() override {
    std::lock_guard<std::mutex> lock(mutex_);
    result_ = at::Tensor();
  }

 private:
  static at::Tensor GatherPositions(const at::Tensor& tokens, const at::Tensor& index) {
    std::vector<int64_t> shape = index.sizes().vec();
    for (int64_t d = 2; d < tokens.dim(); ++d) shape.push_back(tokens.size(d));
    at::Tensor expanded = index;
    for (int64_t d = 2; d < tokens.dim(); ++d) expanded = expanded.unsqueeze(-1);
    return tokens.detach().gather(1, expanded.expand(shape));
  }

  // The positions on a value of `length` positions that holds the input's last ones.
  std::vector<std::vector<int64_t>> EndAligned(int64_t length, const HookPoint& point) const {
    const int64_t shift = inputLength_ - length;
    std::vector<std::vector<int64_t>> rows = rows_;
    for (auto& row : rows) {
      for (int64_t& p : row) {
        if (p < shift) {
          throw TypedError(ErrorKind::Index, "position " + std::to_string(p) + " is not in '" + point.name + "': the model returns " + std::to_string(length) + " of the input's " +
                                                 std::to_string(inputLength_) + " positions (the last ones); ask for positions among them (e.g. 'last') or leave the logits out (saveLogits: false)");
        }
        p -= shift;
      }
    }
    return rows;
  }

  std::vector<std::vector<int64_t>> rows_;
  RowFacts facts_;
  std::vector<int64_t> groups_;
  std::string layout_;
  bool avgOverExample_;
  int64_t inputLength_;
  int64_t sequenceLength_;
  std::mutex mutex_;
  CachedIndex index_;
  at::Tensor result_;
};

class PatternKernel : public HeadResultsKernel {
 public:
  PatternKernel(std::vector<std::vector<int64_t>> columns, std::vector<int64_t> columnGroups, std::vector<std::vector<int64_t>> rows,
                std::vector<int64_t> rowGroups, std::vector<int64_t> offsets, std::vector<int64_t> heads, std::string reduction, bool runningMean,
                int64_t sequenceLength = 0)
      : columns_(std::move(columns)), columnFacts_(FactsOf(columns_)), columnGroups_(std::move(columnGroups)), rows_(std::move(rows)), rowGroups_(std::move(rowGroups)),
        offsets_(std::move(offsets)), heads_(std::move(heads)), reduction_(std::move(reduction)), runningMean_(runningMean), sequenceLength_(sequenceLength) {}

  // The next batch's positions; with runningMean the mean so far is kept.
  void Configure(Napi::Env, const Napi::Object& options) override;

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    if (value.dim() != 4) throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; expected [batch, heads, query, key]");
    CheckSequenceLength(value.size(2), sequenceLength_, point, "query positions");
    const int64_t batch = value.size(0);
    std::vector<int64_t> heads = heads_;
    if (heads.empty()) {
      for (int64_t h = 0; h < value.size(1); ++h) heads.push_back(h);
    }
    std::vector<std::pair<int64_t, at::Tensor>> out;
    for (int64_t h : heads) {
      if (h < 0 || h >= value.size(1)) throw TypedError(ErrorKind::Index, "head " + std::to_string(h) + " is outside '" + point.name + "' (" + std::to_string(value.size(1)) + " heads)");
    }
    const bool plain = PlainCopyable(value);
    if (rows_.empty() && plain) {
      // easyroutine without a row partition: the pattern at the flattened positions, whatever the
      // method; one copy per head
      CheckRows(columns_, batch, value.size(2), point, &columnFacts_);
      CheckRows(columns_, batch, value.size(3), point, &columnFacts_);
      std::vector<at::Tensor> perHead = GatherPatternHeads(value, heads, columns_, columnFacts_.iota);
      for (size_t i = 0; i < heads.size(); ++i) out.emplace_back(heads[i], std::move(perHead[i]));
    }
    at::Tensor pattern = plain && rows_.empty() ? at::Tensor() : value.detach();
    if (rows_.empty() && !plain) {
      // the same with aten's ops (other devices): every head at once, then one view per head
      at::Tensor picked = static_cast<int64_t>(heads.size()) == value.size(1) ? pattern
                          : pattern.index_select(1, torch::tensor(heads, torch::kInt64).to(pattern.device()));
      if (!columnFacts_.SelectsAll(pattern.size(2)) || pattern.size(2) != pattern.size(3)) {
        std::lock_guard<std::mutex> lock(mutex_);
        const at::Tensor& rowIndex = rowIndex_.Get(columns_, batch, pattern.size(2), point, pattern.device());
        const at::Tensor& colIndex = colIndex_.Get(columns_, batch, pattern.size(3), point, pattern.device());
        const int64_t n = rowIndex.size(1);
        picked = picked.gather(2, rowIndex.view({batch, 1, n, 1}).expand({batch, picked.size(1), n, picked.size(3)}));
        picked = picked.gather(3, colIndex.view({batch, 1, 1, n}).expand({batch, picked.size(1), n, n}));
      } else {
        picked = picked.clone();
      }
      for (size_t i = 0; i < heads.size(); ++i) out.emplace_back(heads[i], picked.select(1, static_cast<int64_t>(i)));
    }
    for (int64_t h : rows_.empty() ? std::vector<int64_t>{} : heads) {
      at::Tensor head = pattern.select(1, h);  // [B, Q, K]
      std::vector<at::Tensor> blocks;
      int64_t rowStart = 0;
      for (int64_t rowSize : rowGroups_) {
        int64_t colStart = 0;
        for (int64_t colSize : columnGroups_) {
          std::vector<at::Tensor> perRow;
          for (int64_t b = 0; b < batch; ++b) {
            const auto& rowsOf = rows_[b % rows_.size()];
            const auto& columnsOf = columns_[b % columns_.size()];
            std::vector<int64_t> r(rowsOf.begin() + rowStart, rowsOf.begin() + rowStart + rowSize);
            std::vector<int64_t> c(columnsOf.begin() + colStart, columnsOf.begin() + colStart + colSize);
            at::Tensor ri = torch::tensor(r, torch::kInt64).to(head.device());
            at::Tensor ci = torch::tensor(c, torch::kInt64).to(head.device());
            at::Tensor block = head[b].index_select(0, ri).index_select(1, ci);  // [|g1|, |g2|]
            if (reduction_ == "mean") {
              perRow.push_back(block.mean());
            } else if (reduction_ == "sum") {
              perRow.push_back(block.sum());
            } else if (reduction_ == "baseline_ratio") {
              // expected share of attention if uniform over the allowed (causal, non-padding) keys
              double baseline = 0;
              for (int64_t i : r) {
                int64_t allowed = 0;
                for (int64_t j : c) allowed += j <= i ? 1 : 0;
                int64_t total = i - offsets_[b % offsets_.size()] + 1;
                baseline += total > 0 ? static_cast<double>(allowed) / static_cast<double>(total) : 0.0;
              }
              baseline /= static_cast<double>(r.size());
              perRow.push_back(block.mean() / baseline);
            } else {
              perRow.push_back(block);
            }
          }
          blocks.push_back(at::stack(perRow, 0));
          colStart += colSize;
        }
        rowStart += rowSize;
      }
      if (reduction_ == "none") {
        out.emplace_back(h, at::cat(blocks, 1));
      } else {
        out.emplace_back(h, at::stack(blocks, 1).view({batch, static_cast<int64_t>(rowGroups_.size()), static_cast<int64_t>(columnGroups_.size())}));
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (runningMean_) {
      // avg_attention_pattern_head: avg += (batch mean - avg) / (batches + 1)
      for (size_t i = 0; i < out.size(); ++i) UpdateRunningMean(results_, i, out[i].first, out[i].second.mean(0, /*keepdim=*/true), batches_, point);
      ++batches_;
      return {};
    }
    results_ = std::move(out);
    return {};
  }


 private:
  std::vector<std::vector<int64_t>> columns_;
  RowFacts columnFacts_;
  std::vector<int64_t> columnGroups_;
  std::vector<std::vector<int64_t>> rows_;
  std::vector<int64_t> rowGroups_;
  std::vector<int64_t> offsets_;
  std::vector<int64_t> heads_;
  std::string reduction_;
  bool runningMean_;
  int64_t sequenceLength_;
  int64_t batches_ = 0;
  CachedIndex rowIndex_, colIndex_;
};

void PatternKernel::Configure(Napi::Env, const Napi::Object& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  columns_ = Rows(options.Get("positions"), "positions");
  columnFacts_ = FactsOf(columns_);
  rowIndex_.Clear();
  colIndex_.Clear();
  offsets_ = Sizes(options.Get("offsets"), "offsets");
  offsets_.resize(columns_.size(), 0);
}

class StatisticsKernel : public HookKernel, public CollectingKernel {
 public:
  explicit StatisticsKernel(std::vector<std::vector<int64_t>> rows) : rows_(std::move(rows)) {}

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    if (value.dim() != 3) throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; expected [batch, seq, d_model]");
    at::Tensor index = IndexTensor(rows_, value.size(0), value.size(1), point, value.device());
    at::Tensor picked = value.detach().gather(1, index.unsqueeze(-1).expand({index.size(0), index.size(1), value.size(2)}));
    at::Tensor mean = picked.mean(-1);
    at::Tensor second = picked.pow(2).mean(-1);
    std::lock_guard<std::mutex> lock(mutex_);
    mean_ = mean;
    second_ = second;
    variance_ = second - mean.pow(2);
    return {};
  }

  // {mean, variance, second_moment}
  Napi::Value Results(ResultWriter& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!mean_.defined()) return out.Env().Undefined();
    Napi::Object statistics = Napi::Object::New(out.Env());
    statistics.Set("mean", out.Tensor(mean_));
    statistics.Set("variance", out.Tensor(variance_));
    statistics.Set("second_moment", out.Tensor(second_));
    return statistics;
  }

  void Collect(std::vector<at::Tensor>& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!mean_.defined()) return;
    out.insert(out.end(), {mean_, variance_, second_});
  }

  void Reset() override {
    std::lock_guard<std::mutex> lock(mutex_);
    mean_ = variance_ = second_ = at::Tensor();
  }

 private:
  std::vector<std::vector<int64_t>> rows_;
  std::mutex mutex_;
  at::Tensor mean_, variance_, second_;
};

// head_out / projected_{query,key,value}: per head, the head's vectors at the positions multiplied by
// its block of the output projection W_O ([d_model, H * d_head]): the head's contribution to the
// residual stream. With a bias, each head adds b_O / H, so the heads sum to the attention output
// (easyroutine added b_O // H, an integer division).
class ProjectHeadsKernel : public HeadResultsKernel {
 public:
  ProjectHeadsKernel(std::vector<std::vector<int64_t>> rows, std::vector<int64_t> groups, bool avgOverExample, at::Tensor weight, at::Tensor bias,
                     std::vector<int64_t> heads, int64_t nHeads)
      : rows_(std::move(rows)), groups_(std::move(groups)), avgOverExample_(avgOverExample), weight_(std::move(weight)), bias_(std::move(bias)),
        heads_(std::move(heads)), nHeads_(nHeads) {}

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    if (value.dim() != 4) throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; expected [batch, heads, seq, d_head]");
    const int64_t dHead = value.size(3);
    if (weight_.dim() != 2 || weight_.size(1) != nHeads_ * dHead) {
      throw TypedError(ErrorKind::Shape, "W_O is " + ShapeString(weight_.sizes()) + "; expected [d_model, " + std::to_string(nHeads_ * dHead) + "]");
    }
    const int64_t group = nHeads_ / value.size(1);  // query heads per key/value head
    at::Tensor tokens = value.detach().transpose(1, 2);  // [B, T, Hx, dh]
    at::Tensor index = IndexTensor(rows_, tokens.size(0), tokens.size(1), point, tokens.device());
    at::Tensor picked = tokens.gather(1, index.unsqueeze(-1).unsqueeze(-1).expand({index.size(0), index.size(1), tokens.size(2), dHead}));
    std::vector<std::pair<int64_t, at::Tensor>> out;
    at::Tensor weight = weight_.to(value.device(), value.scalar_type());
    for (int64_t h : heads_) {
      at::Tensor x = picked.select(2, h / group);  // [B, n, dh]
      at::Tensor projected = at::matmul(x, weight.narrow(1, h * dHead, dHead).t());
      if (bias_.defined()) projected = projected + bias_.to(value.device(), value.scalar_type()) / static_cast<double>(nHeads_);
      if (!groups_.empty()) projected = GroupMeans(projected, groups_);
      if (avgOverExample_) projected = projected.mean(0, /*keepdim=*/true);
      out.emplace_back(h, projected);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    results_ = std::move(out);
    return {};
  }


 private:
  std::vector<std::vector<int64_t>> rows_;
  std::vector<int64_t> groups_;
  bool avgOverExample_;
  at::Tensor weight_, bias_;
  std::vector<int64_t> heads_;
  int64_t nHeads_;
};

// input_embedding_hook with keep_gradient: the value becomes a leaf that requires grad, so gradients
// of any output with respect to it can be taken after the forward.
class GradientLeafKernel : public HookKernel {
 public:
  at::Tensor Run(const at::Tensor& value, const HookPoint&) override {
    at::Tensor leaf = value.detach().clone().requires_grad_(true);
    std::lock_guard<std::mutex> lock(mutex_);
    leaf_ = leaf;
    return leaf;
  }

  Napi::Value Results(ResultWriter& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return leaf_.defined() ? out.Tensor(leaf_) : out.Env().Undefined();
  }

 private:
  std::mutex mutex_;
  at::Tensor leaf_;
};

// keepGradient at an extracted point: the value as a new node of the autograd graph (a view: no
// copy) that the rest of the forward reads, kept so that the gradient of a logit can be taken with
// respect to this very activation once the forward is done.
class GradientSiteKernel : public HookKernel {
 public:
  at::Tensor Run(const at::Tensor& value, const HookPoint&) override {
    at::Tensor site = value.view_as(value);
    std::lock_guard<std::mutex> lock(mutex_);
    site_ = site;
    return site;
  }

  Napi::Value Results(ResultWriter& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return site_.defined() ? out.Tensor(site_) : out.Env().Undefined();
  }

  void Reset() override {
    std::lock_guard<std::mutex> lock(mutex_);
    site_ = at::Tensor();
  }

 private:
  std::mutex mutex_;
  at::Tensor site_;
};

// The norms of each head's projected values at every position, for value-weighted patterns
// (easyroutine's extract_avg_value): ||v_k W_O,h|| for query head h reading kv head h // (H / Hkv).
class ValueNormKernel : public HookKernel {
 public:
  ValueNormKernel(at::Tensor weight, int64_t nHeads) : weight_(std::move(weight)), nHeads_(nHeads) {}

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    if (value.dim() != 4) throw TypedError(ErrorKind::Shape, "'" + point.name + "' is " + ShapeString(value.sizes()) + "; expected [batch, heads, seq, d_head]");
    const int64_t dHead = value.size(3);
    const int64_t group = nHeads_ / value.size(1);
    at::Tensor weight = weight_.to(value.device(), value.scalar_type());
    std::vector<at::Tensor> norms;
    for (int64_t h = 0; h < nHeads_; ++h) {
      at::Tensor projected = at::matmul(value.detach().select(1, h / group), weight.narrow(1, h * dHead, dHead).t());  // [B, T, d]
      norms.push_back(projected.norm(2, {-1}));
    }
    std::lock_guard<std::mutex> lock(mutex_);
    norms_ = at::stack(norms, 1);  // [B, H, T]
    return {};
  }

  at::Tensor norms() {
    std::lock_guard<std::mutex> lock(mutex_);
    return norms_;
  }

 private:
  at::Tensor weight_;
  int64_t nHeads_;
  std::mutex mutex_;
  at::Tensor norms_;
};

// avg_attention_pattern_head with extract_avg_value: the running mean over forwards of the batch mean
// of pattern x value norm (each key weighted by its value's norm), at the positions' rows and every
// key, [1, n, K] per head.
class ValueWeightedPatternKernel : public HookKernel {
 public:
  ValueWeightedPatternKernel(std::vector<std::vector<int64_t>> rows, std::vector<int64_t> heads, std::shared_ptr<ValueNormKernel> norms)
      : rows_(std::move(rows)), heads_(std::move(heads)), norms_(std::move(norms)) {}

  void Configure(Napi::Env, const Napi::Object& options) override {
    std::lock_guard<std::mutex> lock(mutex_);
    rows_ = Rows(options.Get("positions"), "positions");
  }

  at::Tensor Run(const at::Tensor& value, const HookPoint& point) override {
    at::Tensor norms = norms_->norms();
    if (!norms.defined() || norms.size(0) != value.size(0) || norms.size(2) != value.size(3)) {
      throw TypedError(ErrorKind::Shape, "value norms for '" + point.name + "' are missing or do not match the pattern: put the value_norms hook on the values point of the same attention");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    at::Tensor index = IndexTensor(rows_, value.size(0), value.size(2), point, value.device());
    for (size_t i = 0; i < heads_.size(); ++i) {
      const int64_t h = heads_[i];
      at::Tensor weighted = value.detach().select(1, h) * norms.select(1, h).unsqueeze(1);  // [B, Q, K]
      at::Tensor rows = weighted.gather(1, index.unsqueeze(-1).expand({index.size(0), index.size(1), weighted.size(2)}));
      UpdateRunningMean(averages_, i, h, rows.mean(0, /*keepdim=*/true), batches_, point);
    }
    ++batches_;
    return {};
  }

  Napi::Value Results(ResultWriter& out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return HeadResults(out, averages_);
  }

 private:
  std::vector<std::vector<int64_t>> rows_;
  std::vector<int64_t> heads_;
  std::shared_ptr<ValueNormKernel> norms_;
  std::mutex mutex_;
  int64_t batches_ = 0;
  std::vector<std::pair<int64_t, at::Tensor>> averages_;
};

std::string StringOption(const Napi::Object& options, const char* name, const std::string& fallback) {
  Napi::Value value = options.Get(name);
  return value.IsString() ? value.As<Napi::String>().Utf8Value() : fallback;
}

int64_t IntOption(const Napi::Object& options, const char* name, int64_t fallback) {
  Napi::Value value = options.Get(name);
  return value.IsNumber() ? value.As<Napi::Number>().Int64Value() : fallback;
}

}  // namespace

EASYROUTINE_REGISTER_KERNEL(positions, "positions",
                            "the value at each batch row's positions ({positions, groups?, layout: tokens|heads|per_head, avgOverExample?, inputLength?: a shorter value holds the last positions, sequenceLength?: a value of another length is an error})",
                            [](Napi::Env, const Napi::Object& options) {
                              std::string layout = StringOption(options, "layout", "tokens");
                              if (layout != "tokens" && layout != "heads" && layout != "per_head") {
                                throw TypedError(ErrorKind::InvalidArgument, "nativeHook('positions'): layout must be 'tokens', 'heads' or 'per_head'");
                              }
                              return std::make_shared<PositionsKernel>(Rows(options.Get("positions"), "positions"), Sizes(options.Get("groups"), "groups"),
                                                                       layout, options.Get("avgOverExample").ToBoolean().Value(), IntOption(options, "inputLength", 0),
                                                                       IntOption(options, "sequenceLength", 0));
                            });

EASYROUTINE_REGISTER_KERNEL(pattern, "pattern",
                            "attention pattern per head at positions, or its blocks reduced ({positions, groups, rows?, rowGroups?, offsets, heads?, reduction, sequenceLength?: a pattern over another number of queries is an error})",
                            [](Napi::Env, const Napi::Object& options) {
                              std::string reduction = StringOption(options, "reduction", "none");
                              if (reduction != "none" && reduction != "mean" && reduction != "sum" && reduction != "baseline_ratio") {
                                throw TypedError(ErrorKind::InvalidArgument, "nativeHook('pattern'): reduction must be 'none', 'mean', 'sum' or 'baseline_ratio'");
                              }
                              Napi::Value rows = options.Get("rows");
                              auto columns = Rows(options.Get("positions"), "positions");
                              std::vector<int64_t> offsets = Sizes(options.Get("offsets"), "offsets");
                              offsets.resize(columns.size(), 0);
                              return std::make_shared<PatternKernel>(columns, Sizes(options.Get("groups"), "groups"),
                                                                     rows.IsUndefined() || rows.IsNull() ? std::vector<std::vector<int64_t>>{} : Rows(rows, "rows"),
                                                                     Sizes(options.Get("rowGroups"), "rowGroups"), offsets, Sizes(options.Get("heads"), "heads"), reduction,
                                                                     options.Get("runningMean").ToBoolean().Value(),
                                                                     IntOption(options, "sequenceLength", 0));
                            });

namespace {

// W_O as [d_model, heads * d_head] from options.weight and options.layout: "out_in" (nn.Linear's
// [out, in], the default) or "in_out" (Hugging Face's Conv1D, GPT-2's c_proj: [in, out], used transposed).
at::Tensor OutputProjectionWeight(Napi::Env env, const Napi::Object& options, const char* kernel) {
  at::Tensor weight = TensorHandle::From(env, options.Get("weight"), "options.weight");
  const std::string layout = StringOption(options, "layout", "out_in");
  if (layout == "in_out") return weight.t();
  if (layout != "out_in") throw TypedError(ErrorKind::InvalidArgument, std::string("nativeHook('") + kernel + "'): options.layout must be 'out_in' or 'in_out', got '" + layout + "'");
  return weight;
}

}  // namespace

EASYROUTINE_REGISTER_KERNEL(project_heads, "project_heads",
                            "per head, vectors at positions times the head's block of W_O ({positions, groups?, weight, layout?, bias?, heads, nHeads, avgOverExample?})",
                            [](Napi::Env env, const Napi::Object& options) {
                              Napi::Value bias = options.Get("bias");
                              at::Tensor biasTensor = bias.IsUndefined() || bias.IsNull() ? at::Tensor() : TensorHandle::From(env, bias, "options.bias");
                              Napi::Value nHeads = options.Get("nHeads");
                              if (!nHeads.IsNumber()) throw TypedError(ErrorKind::InvalidArgument, "nativeHook('project_heads'): options.nHeads must be a number");
                              return std::make_shared<ProjectHeadsKernel>(Rows(options.Get("positions"), "positions"), Sizes(options.Get("groups"), "groups"),
                                                                          options.Get("avgOverExample").ToBoolean().Value(),
                                                                          OutputProjectionWeight(env, options, "project_heads"), biasTensor,
                                                                          Sizes(options.Get("heads"), "heads"), nHeads.As<Napi::Number>().Int64Value());
                            });

EASYROUTINE_REGISTER_KERNEL(gradient_leaf, "gradient_leaf", "makes the value a leaf that requires grad (results(): the leaf), for gradients after a forward with grad",
                            [](Napi::Env, const Napi::Object&) { return std::make_shared<GradientLeafKernel>(); });

EASYROUTINE_REGISTER_KERNEL(gradient_site, "gradient_site", "passes the value on as a view that stays in the autograd graph (results(): that view), for gradients with respect to it",
                            [](Napi::Env, const Napi::Object&) { return std::make_shared<GradientSiteKernel>(); });

EASYROUTINE_REGISTER_KERNEL(value_norms, "value_norms", "on a values point: each head's projected value norms, for value_weighted_pattern ({weight, layout?, nHeads})",
                            [](Napi::Env env, const Napi::Object& options) {
                              Napi::Value nHeads = options.Get("nHeads");
                              if (!nHeads.IsNumber()) throw TypedError(ErrorKind::InvalidArgument, "nativeHook('value_norms'): options.nHeads must be a number");
                              return std::make_shared<ValueNormKernel>(OutputProjectionWeight(env, options, "value_norms"), nHeads.As<Napi::Number>().Int64Value());
                            });

EASYROUTINE_REGISTER_KERNEL(value_weighted_pattern, "value_weighted_pattern",
                            "running mean of pattern x value norm at the positions' rows ({positions, heads, valueNorms: a value_norms hook})",
                            [](Napi::Env env, const Napi::Object& options) {
                              auto norms = std::dynamic_pointer_cast<ValueNormKernel>(KernelHandle::From(env, options.Get("valueNorms")));
                              if (!norms) throw TypedError(ErrorKind::InvalidArgument, "nativeHook('value_weighted_pattern'): options.valueNorms must be a value_norms hook");
                              return std::make_shared<ValueWeightedPatternKernel>(Rows(options.Get("positions"), "positions"), Sizes(options.Get("heads"), "heads"), norms);
                            });

EASYROUTINE_REGISTER_KERNEL(statistics, "statistics", "mean, variance and second moment over the last dimension at positions ({positions})",
                            [](Napi::Env, const Napi::Object& options) { return std::make_shared<StatisticsKernel>(Rows(options.Get("positions"), "positions")); });

}  // namespace easyroutine
