/* prune.h - internals of the structured-pruning pass (passes/prune_*.c), shared by
 * its files and their tests: the score functions over float matrices
 * (prune_scores.c), the search for prunable groups in a module (prune_groups.c),
 * slicing of params and removal of layers (prune_slice.c), calibration through the
 * interpreter (prune_calib.c).  The pass itself is pass_prune_structured
 * (prune_structured.c, registered in passes.def as `prune-structured`). */
#ifndef ELIDE_PRUNE_H
#define ELIDE_PRUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"

/* Default rounding of kept FFN widths: floats per AVX2 vector register.  codegen
 * chooses 8 (AVX2) or 16 (AVX-512) per target, but the pass runs before a target is
 * known, so it takes the smaller, which divides both (`multiple N` overrides). */
#define PRUNE_DEFAULT_MULTIPLE 8

/* ---- prune_scores.c: unit scores over float matrices ---- */

typedef enum PruneScore {
	PS_L1,      /* sum |w| over the unit's weights */
	PS_L2,      /* sqrt(sum w^2) over the unit's weights */
	PS_MAW,     /* max |W_up[k,:]| + max |W_gate[k,:]| (Width Pruning Dichotomy) */
	PS_ACT,     /* sum |w_ij| * ||X_j|| (Wanda): weights times input-feature norms */
	PS_ANGULAR, /* layers: arccos(cos(x_l, x_{l+n})) / pi, mean over tokens */
	PS_BI,      /* layers: block influence 1 - E[cos(x_l, x_{l+1})] */
	PS_COUNT
} PruneScore;

/* ORDER: PruneScore */
extern const char *const prune_score_names[PS_COUNT];
int prune_score_from_name(const char *s); /* -1 if unknown */

/* The weights of one unit inside one matrix W[rows, cols] (row-major): the rows
 * [start, start+len) (rows_axis) or the columns [start, start+len).  xnorm, when
 * non-NULL, holds the L2 norm over calibration tokens of each input feature of the
 * matrix ([cols]); weight w_ij then counts as |w_ij| * xnorm[j] (PS_ACT). */
typedef struct PruneSpan {
	const float *w;
	int64_t rows, cols;
	bool cols_axis;       /* false: rows of W; true: columns of W */
	int64_t start, len;
	const double *xnorm;  /* [cols] or NULL */
} PruneSpan;

/* Score of a unit made of n spans: PS_L1 and PS_ACT sum |w| (times xnorm for ACT),
 * PS_L2 is the root of the sum of squares, PS_MAW the sum over spans of max |w|
 * (the caller passes the up and gate spans only). */
double prune_unit_score(const PruneSpan *s, uint32_t n, PruneScore sc);
/* max |w| over one span. */
double prune_span_max(const PruneSpan *s);

/* Cosine similarity of two vectors (0 when either is zero); computed in double. */
double prune_cos(const float *a, const float *b, int64_t n);
/* Mean over `rows` rows of arccos(cos(a_r, b_r)) / pi: the angular distance of
 * Gromov et al. between two hidden-state matrices [rows, cols]. */
double prune_angular(const float *a, const float *b, int64_t rows, int64_t cols);
/* Block influence (ShortGPT): 1 - mean over rows of cos(a_r, b_r). */
double prune_bi(const float *a, const float *b, int64_t rows, int64_t cols);

/* Marks in kept[0..n) the `keep` units of highest score among those with
 * cand[i] (cand NULL: all); non-candidates are always kept.  Ties go to the lower
 * index.  Returns the number of candidates removed. */
int64_t prune_select(const double *score, int64_t n, const bool *cand, int64_t keep, bool *kept);

/* Start of the block of n consecutive candidate layers (all of cand[s..s+n)) whose
 * distance dist[s] (distance between the input of layer s and of layer s+n) is
 * smallest; -1 when no block fits.  Ties go to the later block (deeper layers). */
int64_t prune_best_block(const double *dist, int64_t nlayers, const bool *cand, int64_t n);

/* Units to keep of `width` for `keep` (a fraction when !is_count, else a count),
 * rounded to the nearest multiple of `multiple` (> 0), at least `multiple`, at most
 * width.  Returns 0 when keep leaves no unit (the caller reports it). */
int64_t prune_keep_count(double keep, bool is_count, int64_t width, int64_t multiple);

#endif
