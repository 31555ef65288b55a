// The torch operator divdet::weighted_boxes_fusion: its schema and its CPU kernel.
//
// divdet/fusion/wbf.py registers the batched torch implementation for the other
// devices (CompositeExplicitAutograd) and the fake kernel used by torch.compile.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "wbf_kernel.h"

namespace divdet {

namespace {

int conf_type_index(c10::string_view conf_type) {
  const char *names[] = {"avg", "max", "box_and_model_avg", "absent_model_aware_avg"};
  for (int k = 0; k < 4; ++k) {
    if (conf_type == names[k]) return k;
  }
  TORCH_CHECK(false, "weighted_boxes_fusion: conf_type must be one of avg, max, "
              "box_and_model_avg, absent_model_aware_avg, found ", std::string(conf_type));
}

void check(const at::Tensor &t, const char *name, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(t.scalar_type() == dtype, "weighted_boxes_fusion: expected ", name, " of dtype ",
              c10::toString(dtype), ", found ", c10::toString(t.scalar_type()));
  TORCH_CHECK(t.dim() == dim, "weighted_boxes_fusion: expected ", name, " with ", dim,
              " dimension(s), found shape ", t.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> wbf_cpu(
    const at::Tensor &counts, const at::Tensor &boxes, const at::Tensor &scores,
    const at::Tensor &labels, const at::Tensor &weights, double iou_thr, double skip_box_thr,
    c10::string_view conf_type, bool allows_overflow) {
  check(counts, "counts (images, models)", at::kLong, 2);
  check(boxes, "boxes (n, 4)", at::kDouble, 2);
  check(scores, "scores (n,)", at::kDouble, 1);
  check(labels, "labels (n,)", at::kLong, 1);
  check(weights, "weights (models,)", at::kDouble, 1);
  const int64_t num_images = counts.size(0), num_models = counts.size(1);
  const int64_t n = scores.size(0);
  TORCH_CHECK(boxes.size(0) == n && boxes.size(1) == 4 && labels.size(0) == n,
              "weighted_boxes_fusion: expected boxes (n, 4), scores (n,) and labels (n,) with "
              "one n, found ", boxes.sizes(), ", ", scores.sizes(), " and ", labels.sizes());
  TORCH_CHECK(weights.size(0) == num_models, "weighted_boxes_fusion: expected one weight per "
              "model (", num_models, "), found ", weights.size(0));
  auto counts_c = counts.contiguous();
  TORCH_CHECK(counts_c.sum().item<int64_t>() == n, "weighted_boxes_fusion: counts add up to ",
              counts_c.sum().item<int64_t>(), " boxes, found ", n);
  auto boxes_c = boxes.contiguous(), scores_c = scores.contiguous();
  auto labels_c = labels.contiguous(), weights_c = weights.contiguous();
  const int conf = conf_type_index(conf_type);
  auto out_boxes = at::empty({n, 4}, boxes.options());
  auto out_scores = at::empty({n}, scores.options());
  auto out_labels = at::empty({n}, labels.options());
  auto out_counts = at::empty({num_images}, counts.options());
  const int64_t total = wbf(num_images, num_models, counts_c.data_ptr<int64_t>(),
                            boxes_c.data_ptr<double>(), scores_c.data_ptr<double>(),
                            labels_c.data_ptr<int64_t>(), weights_c.data_ptr<double>(), iou_thr,
                            skip_box_thr, conf, allows_overflow ? 1 : 0,
                            out_boxes.data_ptr<double>(), out_scores.data_ptr<double>(),
                            out_labels.data_ptr<int64_t>(), out_counts.data_ptr<int64_t>());
  TORCH_CHECK(total >= 0, "weighted_boxes_fusion: out of memory for ", n, " boxes");
  return {out_boxes.narrow(0, 0, total), out_scores.narrow(0, 0, total),
          out_labels.narrow(0, 0, total), out_counts};
}

}  // namespace divdet

TORCH_LIBRARY(divdet, m) {
  m.def("weighted_boxes_fusion(Tensor counts, Tensor boxes, Tensor scores, Tensor labels, "
        "Tensor weights, float iou_thr, float skip_box_thr, str conf_type, bool allows_overflow)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(divdet, CPU, m) { m.impl("weighted_boxes_fusion", &divdet::wbf_cpu); }

// A Python module too (empty), so that `import divdet.fusion._C` and tools that walk
// the package work; divdet/fusion/wbf.py loads it with torch.ops.load_library.
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
