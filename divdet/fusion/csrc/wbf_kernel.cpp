/*
 * Weighted Boxes Fusion on the host, for a batch of images, in one call:
 * pre-filtering, grouping by (image, label), greedy clustering in visiting
 * order, the clusters' confidences and the per-image output order.
 *
 * wbf_op.cpp registers it as the CPU kernel of the torch operator
 * divdet::weighted_boxes_fusion (after checking the tensors); divdet/fusion/wbf.py
 * registers the batched torch implementation of the same computation for the
 * other devices: the same float64 operations in the same order, so that the two
 * agree bitwise wherever the model weights are all 1 (tested; with other weights
 * their sums may round differently in the last bit).
 */
#include "wbf_kernel.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
namespace divdet {

typedef struct {  /* a kept box */
  int64_t image, label, index, model;
  double box[4], wscore;
} Box;

typedef struct {  /* a fused box */
  int64_t image, label, group_first, rank;
  double box[4], score;
} Cluster;

/* (image, label) groups, each in visiting order: descending weighted score,
 * ties in reverse input order. */
static int visit_order(const void *pa, const void *pb) {
  const Box *a = static_cast<const Box *>(pa), *b = static_cast<const Box *>(pb);
  if (a->image != b->image) return a->image < b->image ? -1 : 1;
  if (a->label != b->label) return a->label < b->label ? -1 : 1;
  if (a->wscore != b->wscore) return a->wscore > b->wscore ? -1 : 1;
  return a->index > b->index ? -1 : (a->index < b->index);
}

/* Per image, descending score; ties in reverse order of the clusters'
 * concatenation (groups by first appearance, clusters by creation), which is
 * what ensemble-boxes' argsort()[::-1] gives. */
static int output_order(const void *pa, const void *pb) {
  const Cluster *a = static_cast<const Cluster *>(pa), *b = static_cast<const Cluster *>(pb);
  if (a->image != b->image) return a->image < b->image ? -1 : 1;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  if (a->group_first != b->group_first) return a->group_first > b->group_first ? -1 : 1;
  return a->rank > b->rank ? -1 : (a->rank < b->rank);
}

static double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

int64_t wbf(int64_t num_images, int64_t num_models, const int64_t *counts, const double *boxes,
            const double *scores, const int64_t *labels, const double *weights, double iou_thr,
            double skip_box_thr, int conf_type, int allows_overflow, double *out_boxes,
            double *out_scores, int64_t *out_labels, int64_t *out_counts) {
  int64_t n = 0;
  for (int64_t k = 0; k < num_images * num_models; ++k) n += counts[k];
  memset(out_counts, 0, sizeof(int64_t) * num_images);
  double weight_total = 0.0, weight_max = 0.0;
  for (int64_t t = 0; t < num_models; ++t) {
    weight_total += weights[t];
    if (t == 0 || weights[t] > weight_max) weight_max = weights[t];
  }
  Box *kept = (Box *)malloc(sizeof(Box) * (n ? n : 1));
  Cluster *clusters = (Cluster *)malloc(sizeof(Cluster) * (n ? n : 1));
  double *sums = (double *)malloc(sizeof(double) * 8 * (n ? n : 1));  /* s*box (4), s, max s, w, count */
  unsigned char *present = (unsigned char *)calloc((size_t)(n ? n : 1) * (num_models ? num_models : 1), 1);
  /* a group's clusters, one array per coordinate (so the IoU loop vectorises) */
  double *fx = (double *)malloc(sizeof(double) * 6 * (n ? n : 1));
  if (!kept || !clusters || !sums || !present || !fx) {
    free(kept), free(clusters), free(sums), free(present), free(fx);
    return -1;
  }
  double *fy = fx + n, *fx2 = fx + 2 * n, *fy2 = fx + 3 * n, *farea = fx + 4 * n,
         *ious = fx + 5 * n;

  /* prefilter_boxes: swap, clip, drop low scores and empty boxes */
  int64_t num_kept = 0, i = 0;
  for (int64_t j = 0; j < num_images; ++j) {
    for (int64_t t = 0; t < num_models; ++t) {
      for (int64_t e = 0; e < counts[j * num_models + t]; ++e, ++i) {
        const double *b = boxes + 4 * i;
        const double x1 = clamp01(b[0] < b[2] ? b[0] : b[2]);
        const double x2 = clamp01(b[0] < b[2] ? b[2] : b[0]);
        const double y1 = clamp01(b[1] < b[3] ? b[1] : b[3]);
        const double y2 = clamp01(b[1] < b[3] ? b[3] : b[1]);
        if (!(scores[i] >= skip_box_thr) || (x2 - x1) * (y2 - y1) == 0) continue;
        Box *k = kept + num_kept++;
        k->image = j, k->label = labels[i], k->index = i, k->model = t;
        k->box[0] = x1, k->box[1] = y1, k->box[2] = x2, k->box[3] = y2;
        k->wscore = scores[i] * weights[t];
      }
    }
  }
  qsort(kept, num_kept, sizeof(Box), visit_order);

  /* greedy clustering, group by group; a box joins the cluster whose current
   * fused box overlaps it most (the first maximum) if that IoU > iou_thr */
  int64_t num_clusters = 0;
  for (int64_t start = 0, end; start < num_kept; start = end) {
    int64_t group_first = kept[start].index;
    for (end = start + 1; end < num_kept && kept[end].image == kept[start].image &&
                          kept[end].label == kept[start].label; ++end)
      if (kept[end].index < group_first) group_first = kept[end].index;
    Cluster *f = clusters + num_clusters;
    double *s = sums + 8 * num_clusters;
    unsigned char *p = present + num_clusters * num_models;
    int64_t made = 0;
    for (const Box *r = kept + start; r < kept + end; ++r) {
      const double *rb = r->box;
      const double area_b = (rb[2] - rb[0]) * (rb[3] - rb[1]);
      for (int64_t c = 0; c < made; ++c) {
        double w = (fx2[c] < rb[2] ? fx2[c] : rb[2]) - (fx[c] > rb[0] ? fx[c] : rb[0]);
        double h = (fy2[c] < rb[3] ? fy2[c] : rb[3]) - (fy[c] > rb[1] ? fy[c] : rb[1]);
        w = w > 0 ? w : 0;
        h = h > 0 ? h : 0;
        const double inter = w * h;
        ious[c] = inter / (farea[c] + area_b - inter);
      }
      int64_t best = made ? 0 : -1;
      double best_iou = made ? ious[0] : 0.0;
      for (int64_t c = 1; c < made; ++c)  /* the first maximum, as torch.max */
        if (ious[c] > best_iou) best = c, best_iou = ious[c];
      const int new_cluster = best < 0 || best_iou <= iou_thr;
      const int64_t k = new_cluster ? made++ : best;
      double *sk = s + 8 * k;
      if (new_cluster) {
        f[k].image = r->image, f[k].label = r->label;
        f[k].group_first = group_first, f[k].rank = k;
        for (int c = 0; c < 8; ++c) sk[c] = 0.0;
      }
      for (int c = 0; c < 4; ++c) sk[c] += r->wscore * rb[c];
      sk[4] += r->wscore;
      sk[5] = r->wscore > sk[5] ? r->wscore : sk[5];
      sk[6] += weights[r->model];
      sk[7] += 1.0;
      p[k * num_models + r->model] = 1;
      for (int c = 0; c < 4; ++c) f[k].box[c] = new_cluster ? rb[c] : sk[c] / sk[4];
      fx[k] = f[k].box[0], fy[k] = f[k].box[1], fx2[k] = f[k].box[2], fy2[k] = f[k].box[3];
      farea[k] = (fx2[k] - fx[k]) * (fy2[k] - fy[k]);
    }
    num_clusters += made;
  }

  /* the clusters' confidences (ensemble-boxes' conf_type rules) */
  for (int64_t c = 0; c < num_clusters; ++c) {
    const double *s = sums + 8 * c;
    const unsigned char *p = present + c * num_models;
    const double count = s[7];
    double conf;
    if (conf_type == CONF_MAX) {
      conf = s[5] / weight_max;
    } else {
      conf = s[4] / (count > 1 ? count : 1);
      if (conf_type == CONF_BOX_AND_MODEL_AVG) {
        double models = 0.0;
        for (int64_t t = 0; t < num_models; ++t) models += p[t] ? weights[t] : 0.0;
        conf = conf * count / (s[6] > 1e-12 ? s[6] : 1e-12);
        conf = conf * models / weight_total;
      } else if (conf_type == CONF_ABSENT_MODEL_AWARE_AVG) {
        double absent = 0.0;
        for (int64_t t = 0; t < num_models; ++t) absent += p[t] ? 0.0 : weights[t];
        conf = conf * count / (s[6] + absent);
      } else if (!allows_overflow) {
        conf = conf * (count < num_models ? count : (double)num_models) / weight_total;
      } else {
        conf = conf * count / weight_total;
      }
    }
    clusters[c].score = conf;
  }

  qsort(clusters, num_clusters, sizeof(Cluster), output_order);
  for (int64_t c = 0; c < num_clusters; ++c) {
    memcpy(out_boxes + 4 * c, clusters[c].box, sizeof(double) * 4);
    out_scores[c] = clusters[c].score;
    out_labels[c] = clusters[c].label;
    out_counts[clusters[c].image] += 1;
  }
  free(kept), free(clusters), free(sums), free(present), free(fx);
  return num_clusters;
}

}  // namespace divdet
