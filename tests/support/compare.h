/* compare.h - how tests compare logits: the maximum relative error of a row
 * (max |a - b| / max |b|, infinite when a holds a NaN) and the argmax; and how they
 * score them: the bits of a target under the softmax of a row. */
#ifndef ELIDE_TESTS_COMPARE_H
#define ELIDE_TESTS_COMPARE_H

#include <stdint.h>

/* max_i |a[i] - b[i]| / max_i |b[i]| over n values (b all zero: the absolute error). */
double ts_rel_err(const float *a, const float *b, int64_t n);

/* The index of the largest of x[0..n), the first one on ties. */
int64_t ts_argmax(const float *x, int64_t n);

/* -log2 softmax(logits)[target] over n logits, in double (the bits per byte of a
 * byte model's prediction of target). */
double ts_bits(const float *logits, int64_t n, int64_t target);

#endif
