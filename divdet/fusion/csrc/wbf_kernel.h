// Weighted Boxes Fusion of a batch of images on the host (wbf_kernel.cpp).
#pragma once

#include <cstdint>

namespace divdet {

// The values of conf_type, in the order of divdet.fusion.wbf.CONF_TYPES.
enum { CONF_AVG = 0, CONF_MAX = 1, CONF_BOX_AND_MODEL_AVG = 2, CONF_ABSENT_MODEL_AWARE_AVG = 3 };

// counts:      (num_images * num_models,) boxes of model t in image j at
//              j * num_models + t; the inputs hold them in that order
// boxes:       (n, 4) x1 y1 x2 y2 normalised to [0, 1] (swapped and clipped here)
// scores:      (n,);  labels: (n,)
// weights:     (num_models,)
// conf_type:   one of the CONF_* values
// out_boxes, out_scores, out_labels: (n, 4), (n,), (n,): the fused boxes of
//              every image, image after image
// out_counts:  (num_images,) fused boxes per image
// returns the number of fused boxes, or -1 if memory ran out
int64_t wbf(int64_t num_images, int64_t num_models, const int64_t *counts, const double *boxes,
            const double *scores, const int64_t *labels, const double *weights, double iou_thr,
            double skip_box_thr, int conf_type, int allows_overflow, double *out_boxes,
            double *out_scores, int64_t *out_labels, int64_t *out_counts);

}  // namespace divdet
