/*
 * The sequential part of Weighted Boxes Fusion on the host: greedy clustering of
 * every (image, label) group's boxes in visiting order (descending weighted
 * score). divdet/models/utils/ensemble.py prepares the rows, calls this through
 * ctypes, and computes the clusters' scores from the assignment; its torch loop
 * is the same computation (same operations in the same order, so the results
 * are bitwise equal; tested) and is used where this library is not built or the
 * boxes are on an accelerator.
 *
 * A plain C function with no Python API, so the build needs only a C compiler;
 * the module init below only makes the file a valid extension module.
 */
#include <Python.h>
#include <stdint.h>
#include <string.h>

/*
 * rows:         (num_groups * steps, 7) float64, row g * steps + j is the j-th
 *               box of group g: x1 y1 x2 y2, weighted score, model weight, model
 *               (rows j >= sizes[g] are padding and never read)
 * sizes:        (num_groups,) boxes per group, each <= steps
 * iou_thr:      a box joins the cluster whose fused box it overlaps most if that
 *               IoU is > iou_thr, else it starts a cluster
 * fused:        out, (num_groups * steps, 4): fused box of cluster c of group g
 *               at g * steps + c; entries beyond the group's clusters are 0
 * sums:         scratch, (num_groups * steps, 5)
 * assign:       out, (num_groups * steps,): cluster of the j-th box of group g
 * num_clusters: out, (num_groups,)
 */
void divdet_wbf_cluster(int64_t num_groups, int64_t steps, const int64_t *sizes,
                        const double *rows, double iou_thr, double *fused, double *sums,
                        int64_t *assign, int64_t *num_clusters) {
  memset(fused, 0, sizeof(double) * 4 * num_groups * steps);
  memset(sums, 0, sizeof(double) * 5 * num_groups * steps);
  for (int64_t g = 0; g < num_groups; ++g) {
    const double *r = rows + 7 * g * steps;
    double *f = fused + 4 * g * steps;
    double *s = sums + 5 * g * steps;
    int64_t clusters = 0;
    for (int64_t j = 0; j < sizes[g]; ++j, r += 7) {
      const double area_b = (r[2] - r[0]) * (r[3] - r[1]);
      int64_t best = -1;
      double best_iou = 0.0;
      for (int64_t c = 0; c < clusters; ++c) {
        const double *fc = f + 4 * c;
        double w = (fc[2] < r[2] ? fc[2] : r[2]) - (fc[0] > r[0] ? fc[0] : r[0]);
        double h = (fc[3] < r[3] ? fc[3] : r[3]) - (fc[1] > r[1] ? fc[1] : r[1]);
        w = w > 0 ? w : 0;
        h = h > 0 ? h : 0;
        const double inter = w * h;
        const double area = (fc[2] - fc[0]) * (fc[3] - fc[1]);
        const double iou = inter / (area + area_b - inter);
        if (best < 0 || iou > best_iou) { /* the first maximum, as torch.max */
          best = c;
          best_iou = iou;
        }
      }
      const int new_cluster = best < 0 || best_iou <= iou_thr;
      const int64_t k = new_cluster ? clusters++ : best;
      double *sk = s + 5 * k;
      for (int i = 0; i < 4; ++i) sk[i] += r[4] * r[i];
      sk[4] += r[4];
      for (int i = 0; i < 4; ++i) f[4 * k + i] = new_cluster ? r[i] : sk[i] / sk[4];
      assign[g * steps + j] = k;
    }
    num_clusters[g] = clusters;
  }
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wbf", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__wbf(void) { return PyModule_Create(&module); }
