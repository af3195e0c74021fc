/* prune.h - internals of the structured-pruning pass (passes/prune_*.c), shared by
 * its files and their tests: the score functions over float matrices
 * (prune_scores.c), the search for prunable groups in a module (prune_groups.c),
 * slicing of params (prune_slice.c), calibration through the interpreter
 * (prune_calib.c).  Layer boundaries, residual blocks and their removal are pass
 * utilities (passes.h, pass_layers.c), shared with drop-layers.  The pass itself
 * is pass_prune_structured (prune_structured.c, registered in passes.def as
 * `prune-structured`). */
#ifndef ELIDE_PRUNE_H
#define ELIDE_PRUNE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ir/ir.h"
#include "passes/passes.h"

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

/* ---- prune_groups.c: the prunable groups of one function ---- */

/* An FFN block: producers (linears whose output rows are the units, e.g. gate and up
 * of SwiGLU) joined by elementwise ops into the input of one consumer linear (down,
 * whose columns are the units).  Unit k = row k of every producer and of every bias
 * on the path, column k of down. */
typedef struct PruneFfn {
	int32_t layer;
	uint32_t down_op;          /* op index of the consumer linear */
	int32_t down;              /* param of W_down [N, F] */
	int32_t gate, up;          /* producer params [F, K]; gate feeds an activation (-1 if none) */
	int32_t rows[4]; uint32_t nrows; /* every producer param (rows sliced) */
	int32_t vecs[4]; uint32_t nvecs; /* bias params [F] on the path (sliced) */
	uint32_t consts[8]; uint32_t nconsts; /* const ops of width F on the path (retyped) */
	uint32_t in_op;            /* op defining the producers' input (calibration) */
	uint32_t mid_op;           /* op defining the consumer's input (calibration) */
	int64_t width;             /* F */
} PruneFfn;

/* An attention block: the linears making q, k and v (rope and bias adds between),
 * the attention op and the output linear.  A KV group g = rows of wk/wv of kv head g
 * plus the rows of wq and columns of wo of its query heads. */
typedef struct PruneAttn {
	int32_t layer;
	uint32_t attn_op;          /* op index of the attention */
	int32_t wq, wk, wv, wo;    /* params */
	int32_t bq, bk, bv;        /* bias params [width] or -1 */
	uint32_t rope_q, rope_k;   /* op index of the rope on q / k, UINT32_MAX if none */
	uint32_t in_op;            /* op defining the input of wq (calibration) */
	int64_t heads, kv_heads, head_dim;
} PruneAttn;

typedef struct PruneGroups {
	PruneFfn *ffn; uint32_t nffn;
	PruneAttn *attn; uint32_t nattn;
	PassLayers ly;             /* layer boundaries and residual blocks (pass_layers.c) */
} PruneGroups;

/* Finds the groups of f (computes f's use lists).  Groups whose intermediate values
 * escape the block are not listed: slicing them would change other ops. */
void prune_find_groups(Module *m, Func *f, PruneGroups *g);
void prune_groups_free(PruneGroups *g);
/* Param index of a linear op's weight operand, or -1 when it is not a param. */
int32_t prune_linear_param(const Func *f, const Op *op);

/* ---- prune_slice.c: cutting params ---- */

/* Keeps the units of param p with kept[u] (u < nunits), a unit being `block`
 * consecutive rows (cols false) or columns (cols true); a rank-1 param is cut along
 * its only axis.  Rewrites the data (when loaded), the type and the hash. */
void prune_slice_param(Module *m, int32_t p, bool cols, const bool *kept, int64_t nunits, int64_t block);

/* ---- prune_calib.c: calibration through the interpreter ---- */

/* Reads calibration tokens: a file of decimal token ids (separated by whitespace or
 * commas) gives those ids; any other file gives its bytes.  At most max tokens. */
bool prune_read_tokens(const char *path, int64_t max, int32_t **out, int64_t *n, char *err, size_t nerr);

/* What a calibration run collected. */
typedef struct PruneCalib {
	const Func *f;         /* the entry that ran */
	double **sumsq;        /* [f->nops]: per watched op, sum over tokens of x_j^2 per column */
	int64_t *cols;         /* [f->nops]: columns of the watched ops */
	uint32_t *state_op;    /* [nstates] op whose value is hidden state l (layer boundaries) */
	uint32_t nstates;
	float **states;        /* [nstates] -> [rows, dim] every token's state */
	int64_t rows, caprows, dim;
} PruneCalib;

/* Runs entry f of m on the tokens (a prefill or forward entry in chunks of its bound
 * from position 0, or a step entry token by token), accumulating the squared
 * activations of the ops with watch[i] and the rows of the hidden states defined by
 * state_op[0..nstates).  False with a message in err on a runtime error. */
bool prune_calibrate(const Module *m, const Func *f, const int32_t *tok, int64_t n, const bool *watch,
                     const uint32_t *state_op, uint32_t nstates, PruneCalib *c, char *err, size_t nerr);
/* sqrt of the accumulated squares of op i ([cols]), NULL when not watched. */
double *prune_calib_norms(const PruneCalib *c, uint32_t op);
void prune_calib_free(PruneCalib *c);
/* The entry to calibrate with: prefill, else forward, else step; NULL if none. */
Func *prune_calib_entry(const Module *m);

/* ---- prune_structured.c: one prune statement, read and checked ---- */

typedef enum PruneUnit { PU_FFN, PU_HEAD, PU_KV_GROUP, PU_LAYER, PU_SUBLAYER } PruneUnit;

typedef struct PruneStmt {
	const PolicyStmt *s;
	PruneUnit unit;
	PruneScore score;
	Loc score_loc;
	double keep;              /* fraction in (0, 1] or count */
	bool keep_count;          /* keep is a count of units (per layer) or of layers */
	Loc keep_loc;
	const char *keep_text;    /* as written, for messages */
	int block;                /* sublayer: PB_ATTN or PB_FFN from `block`, -1 for both */
	bool *cand;               /* [nlayers] layers the statement may cut (range minus protected) */
	int64_t multiple;         /* rounding of kept widths */
	const char *calib;        /* calibration file resolved against the policy's file, or NULL */
	int64_t ntokens;          /* calibration tokens */
	Loc loc;
	FILE *notes;              /* what was removed, for Module.manifest_notes */
	bool changed;             /* set when something was removed */
} PruneStmt;

/* Loads the params' data if some are missing (from Module.weights_path, resolved
 * against the directory of `loc`'s file when relative); false after reporting. */
bool prune_need_data(Module *m, Diag *d, Loc loc);
/* Calibration tokens of the statement; false after reporting. */
bool prune_stmt_tokens(const PruneStmt *ps, Diag *d, int32_t **tok, int64_t *n);
/* The statement's tokens, the params' data, then prune_calibrate of entry ref into
 * cal; false after reporting (cal then holds nothing to free). */
bool prune_stmt_calibrate(Module *m, const PruneStmt *ps, Diag *d, const Func *ref, const bool *watch,
                          const uint32_t *state_op, uint32_t nstates, PruneCalib *cal);

/* ---- prune_width.c / prune_layers.c: the statement kinds ---- */
bool prune_width(Module *m, PruneStmt *ps, Diag *d);  /* ffn_neuron, head, kv_group */
bool prune_layers(Module *m, PruneStmt *ps, Diag *d); /* layer */
bool prune_sublayers(Module *m, PruneStmt *ps, Diag *d); /* sublayer (prune_sublayer.c) */

#endif
