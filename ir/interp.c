/* interp.c - the reference interpreter: the semantics of every op of ops.def, in
 * plain C loops written for clarity rather than speed (sums in double).  It runs one
 * entry of a Module over its state (one K and one V cache per State, [ctx, kv_heads,
 * head_dim] each) and is what every compiled variant is checked against.
 *   1. bind the entry's arguments: the position goes to the argument named `pos` (or
 *      else to a scalar second argument), the token(s) to the other one: an i32
 *      scalar takes the single token, an i32 array the sequence (its length resolves
 *      the dynamic dim);
 *   2. evaluate the ops in order, each into a fresh buffer (params are aliased);
 *      a value with a dynamic first dim takes its actual length from the first
 *      operand that has one;
 *   3. the first operand of `ret` is copied out.
 * Bad input (token out of range, position past the context, sequence longer than the
 * bound) and malformed IR are reported as messages; the interpreter never crashes. */
#include "ir/ir.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INTERP_MAX_NUMEL (INT64_C(1) << 30) /* elements per value */

/* A runtime tensor: actual shape (the dynamic dim resolved) and its data. */
typedef struct Tensor {
	DType dt;          /* DT_F32 (f) or DT_I32 (i) */
	int rank;
	int64_t d[IR_MAX_RANK];
	float *f;          /* f32 data, numel values */
	int32_t *i;        /* i32 data, numel values */
	bool owned;        /* data allocated by this run (params are aliased) */
} Tensor;

struct InterpState {
	const Module *m;
	float **kcache, **vcache; /* per State: [ctx][kv_heads][head_dim] */
	uint16_t **bounds;        /* per State with page > 0: [kv_heads][ctx/page][2][head_dim] bf16, min then max */
	InterpOpHook hook;
	void *hook_user;
	double *knobs;            /* [m->nknobs]: current values of the run-time knobs */
	InterpStats stats;        /* counters since creation or reset */
	bool poison;              /* caches start as NaN instead of zero */
	int64_t pages_visited;    /* pages attention_quest attended to, summed over kv heads and rows */
};

/* The context of one run: where errors go and the value table. */
typedef struct Run {
	InterpState *s;
	const Func *f;
	const Op *op;       /* op being evaluated (for messages) */
	Tensor *vals;       /* [f->nvals] */
	uint32_t *partner;  /* region matching (ir_match_regions) */
	bool *taken;        /* per 'if': whether its first branch ran */
	char *err;
	size_t nerr;
} Run;

static bool
rerr(Run *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (r->err && r->nerr) {
		size_t k = 0;
		if (r->op)
			k = (size_t)snprintf(r->err, r->nerr, "in '%s', op '%s': ", r->f->name,
			                     ir_op_names[r->op->code]);
		if (k < r->nerr)
			vsnprintf(r->err + k, r->nerr - k, fmt, ap);
	}
	va_end(ap);
	return false;
}

static int64_t
numel(const Tensor *t)
{
	int64_t n = 1;
	for (int k = 0; k < t->rank; k++)
		n *= t->d[k];
	return n;
}

static int64_t
lastdim(const Tensor *t)
{
	return t->rank ? t->d[t->rank - 1] : 1;
}

/* Rows of a tensor viewed as [rows, lastdim]. */
static int64_t
nrows(const Tensor *t)
{
	int64_t c = lastdim(t);
	return c ? numel(t) / c : 0;
}

/* ---- state ---- */

/* The value a cache slot holds before any write: zero, or NaN when poisoned. */
static void
fill_caches(InterpState *s)
{
	for (uint32_t i = 0; i < s->m->nstates; i++) {
		const State *st = &s->m->states[i];
		if (st->kind != ST_KVCACHE || st->ctx <= 0 || st->kv_heads <= 0 || st->head_dim <= 0)
			continue;
		size_t n = (size_t)(st->ctx * st->kv_heads * st->head_dim);
		for (size_t k = 0; k < n; k++)
			s->kcache[i][k] = s->vcache[i][k] = s->poison ? NAN : 0.0f;
		if (s->bounds[i])
			memset(s->bounds[i], 0, (size_t)(interp_npages(st) * st->kv_heads * 2 * st->head_dim) * sizeof(uint16_t));
	}
}

int64_t
interp_npages(const State *st)
{
	return st->page > 0 ? (st->ctx + st->page - 1) / st->page : 0;
}

const uint16_t *
interp_page_bounds(const InterpState *s, uint32_t state)
{
	return state < s->m->nstates ? s->bounds[state] : NULL;
}

InterpState *
interp_new(const Module *m)
{
	InterpState *s = xcalloc(1, sizeof *s);
	s->m = m;
	s->knobs = xcalloc(m->nknobs + 1, sizeof *s->knobs);
	for (uint32_t i = 0; i < m->nknobs; i++)
		s->knobs[i] = m->knobs[i].dflt;
	s->stats.slots = xcalloc(m->nstats + 1, sizeof *s->stats.slots);
	s->kcache = xcalloc(m->nstates + 1, sizeof *s->kcache);
	s->vcache = xcalloc(m->nstates + 1, sizeof *s->vcache);
	s->bounds = xcalloc(m->nstates + 1, sizeof *s->bounds);
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *st = &m->states[i];
		int64_t n = st->ctx * st->kv_heads * st->head_dim;
		if (st->kind != ST_KVCACHE || st->ctx <= 0 || st->kv_heads <= 0 || st->head_dim <= 0)
			n = 0;
		s->kcache[i] = xcalloc((size_t)(n ? n : 1), sizeof(float));
		s->vcache[i] = xcalloc((size_t)(n ? n : 1), sizeof(float));
		if (n && st->page > 0)
			s->bounds[i] = xcalloc((size_t)(interp_npages(st) * st->kv_heads * 2 * st->head_dim), sizeof(uint16_t));
	}
	return s;
}

void
interp_free(InterpState *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->m->nstates; i++) {
		free(s->kcache[i]);
		free(s->vcache[i]);
		free(s->bounds[i]);
	}
	free(s->kcache);
	free(s->vcache);
	free(s->knobs);
	free(s->stats.slots);
	free(s->bounds);
	free(s);
}

void
interp_reset(InterpState *s)
{
	fill_caches(s);
	s->stats.calls = s->stats.tokens = s->stats.layers = 0;
	memset(s->stats.slots, 0, (s->m->nstats + 1) * sizeof *s->stats.slots);
}

void
interp_set_poison(InterpState *s, bool on)
{
	s->poison = on;
	fill_caches(s);
}

bool
interp_set_knob(InterpState *s, const char *name, double v)
{
	int32_t k = ir_find_knob(s->m, name);
	if (k < 0)
		return false;
	s->knobs[k] = v;
	return true;
}

const InterpStats *
interp_stats(const InterpState *s)
{
	return &s->stats;
}

bool
interp_kv(const InterpState *s, uint32_t state, const float **k, const float **v)
{
	if (state >= s->m->nstates)
		return false;
	*k = s->kcache[state];
	*v = s->vcache[state];
	return true;
}

const float *
interp_cache_keys(const InterpState *s, uint32_t state)
{
	return state < s->m->nstates ? s->kcache[state] : NULL;
}

int64_t
interp_pages_visited(const InterpState *s)
{
	return s->pages_visited;
}

void
interp_set_op_hook(InterpState *s, InterpOpHook hook, void *user)
{
	s->hook = hook;
	s->hook_user = user;
}

/* ---- op kernels: each reads r->vals[args], writes *o (shape already set) ---- */

static const Tensor *
arg(Run *r, int k)
{
	return &r->vals[r->op->args[k]];
}

static bool
need_f32(Run *r, const Tensor *t, const char *what)
{
	if (t->dt != DT_F32 || !t->f)
		return rerr(r, "%s must be f32", what);
	return true;
}

/* An i32 scalar operand (a position or a token). */
static bool
get_scalar_i32(Run *r, const Tensor *t, const char *what, int32_t *out)
{
	if (t->dt != DT_I32 || !t->i || numel(t) != 1)
		return rerr(r, "%s must be an i32 scalar", what);
	*out = t->i[0];
	return true;
}

static bool
op_embed(Run *r, Tensor *o)
{
	const Tensor *tab = arg(r, 0), *tok = arg(r, 1);
	if (!need_f32(r, tab, "the table") || tab->rank != 2)
		return rerr(r, "the table must be f32[V, D]");
	if (tok->dt != DT_I32 || !tok->i)
		return rerr(r, "token ids must be i32");
	int64_t V = tab->d[0], D = tab->d[1], T = numel(tok);
	if (numel(o) != T * D)
		return rerr(r, "result shape does not fit %lld tokens of width %lld", (long long)T, (long long)D);
	for (int64_t t = 0; t < T; t++) {
		int32_t id = tok->i[t];
		if ((id < 0 || id >= V) && r->f->ops[r->f->vals[r->op->args[1]].def].code == OP_POSITIONS)
			return rerr(r, "position %d past the table of %lld positions", id, (long long)V);
		if (id < 0 || id >= V)
			return rerr(r, "token %d out of range of the vocabulary (%lld)", id, (long long)V);
		memcpy(o->f + t * D, tab->f + (int64_t)id * D, (size_t)D * sizeof(float));
	}
	return true;
}

/* y[r, n] = sum_k x[r, k] W[n, k] */
static bool
op_linear(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0), *w = arg(r, 1);
	if (!need_f32(r, x, "the input") || !need_f32(r, w, "the weight"))
		return false;
	if (w->rank != 2 || lastdim(x) != w->d[1])
		return rerr(r, "weight [N, K] does not fit an input with %lld columns", (long long)lastdim(x));
	int64_t R = nrows(x), K = w->d[1], N = w->d[0];
	if (numel(o) != R * N)
		return rerr(r, "result shape does not fit [%lld, %lld]", (long long)R, (long long)N);
	/* a q8/q4 weight with int8 activations: each row of x quantised per group, then
	 * integer sums per group (ir_quant_row, ir_quant_dot: what the kernels compute) */
	const Op *wd = &r->f->ops[r->f->vals[r->op->args[1]].def];
	const Param *pm = wd->code == OP_PARAM && wd->ia[0] >= 0 && wd->ia[0] < r->s->m->nparams
	                          ? &r->s->m->params[wd->ia[0]] : NULL;
	if (pm && pm->act == AF_INT8 && (pm->format == QF_Q8 || pm->format == QF_Q4)) {
		if (!pm->qdata || pm->type.dims[0] != N || pm->type.dims[1] != K)
			return rerr(r, "param '%s' is not quantised to %s", pm->name, ir_qformat_name(pm->format));
		int64_t ng = ir_quant_groups(K, pm->group);
		int8_t *codes = xmalloc((size_t)K);
		float *sc = xmalloc((size_t)ng * sizeof *sc);
		int32_t *sums = xmalloc((size_t)ng * sizeof *sums);
		for (int64_t i = 0; i < R; i++) {
			ir_quant_row(x->f + i * K, K, pm->group, codes, sc, sums);
			for (int64_t n = 0; n < N; n++)
				o->f[i * N + n] = ir_quant_dot(pm, n, codes, sc, sums);
		}
		free(codes);
		free(sc);
		free(sums);
		return true;
	}
	for (int64_t i = 0; i < R; i++)
		for (int64_t n = 0; n < N; n++) {
			double acc = 0;
			for (int64_t k = 0; k < K; k++)
				acc += (double)x->f[i * K + k] * w->f[n * K + k];
			o->f[i * N + n] = (float)acc;
		}
	return true;
}

/* add, sub, mul: f32 operands of the same shape, element by element; an operand
 * that is one row [N] (a bias) is repeated over every row of the other, [.., N]. */
static bool
op_binary(Run *r, Tensor *o)
{
	const Tensor *a = arg(r, 0), *b = arg(r, 1);
	if (!need_f32(r, a, "the first operand") || !need_f32(r, b, "the second operand"))
		return false;
	int64_t n = numel(o), na = numel(a), nb = numel(b), w = lastdim(o);
	bool arow = na != n && a->rank == 1 && na == w, brow = nb != n && b->rank == 1 && nb == w;
	if ((na != n && !arow) || (nb != n && !brow))
		return rerr(r, "operands of %lld and %lld elements do not fit a result of %lld", (long long)na,
		            (long long)nb, (long long)n);
	for (int64_t i = 0; i < n; i++) {
		float x = a->f[arow ? i % w : i], y = b->f[brow ? i % w : i];
		o->f[i] = (float)ir_scalar_binary(r->op->code, x, y);
	}
	return true;
}

static bool
op_unary(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	if (!need_f32(r, x, "the input") || numel(x) != numel(o))
		return rerr(r, "operand does not fit the result");
	if (!ir_op_is_unary_elemwise(r->op->code))
		return rerr(r, "not a unary op");
	for (int64_t i = 0; i < numel(o); i++)
		o->f[i] = (float)ir_scalar_unary(r->op, x->f[i]);
	return true;
}

/* rmsnorm: y = x / sqrt(mean(x^2) + eps) * w ; layernorm: (x - mean) / sqrt(var + eps) * w + b */
static bool
op_norm(Run *r, Tensor *o)
{
	bool ln = r->op->code == OP_LAYERNORM;
	const Tensor *x = arg(r, 0), *w = arg(r, 1), *b = ln ? arg(r, 2) : NULL;
	if (!need_f32(r, x, "the input") || !need_f32(r, w, "the weight") || (b && !need_f32(r, b, "the bias")))
		return false;
	int64_t D = lastdim(x), R = nrows(x);
	if (numel(w) != D || (b && numel(b) != D) || numel(o) != numel(x))
		return rerr(r, "weight of %lld elements does not fit rows of %lld", (long long)numel(w), (long long)D);
	double eps = r->op->fa[0];
	for (int64_t i = 0; i < R; i++) {
		const float *xr = x->f + i * D;
		double mean = 0, ss = 0;
		if (ln) {
			for (int64_t k = 0; k < D; k++)
				mean += xr[k];
			mean /= (double)D;
		}
		for (int64_t k = 0; k < D; k++)
			ss += (xr[k] - mean) * (xr[k] - mean);
		double inv = 1.0 / sqrt(ss / (double)D + eps);
		for (int64_t k = 0; k < D; k++)
			o->f[i * D + k] = (float)((xr[k] - mean) * inv * w->f[k] + (ln ? b->f[k] : 0.0));
	}
	return true;
}

static void
softmax_row(const float *x, float *y, int64_t n)
{
	double mx = -INFINITY, sum = 0;
	for (int64_t k = 0; k < n; k++)
		mx = x[k] > mx ? x[k] : mx;
	for (int64_t k = 0; k < n; k++)
		sum += exp(x[k] - mx);
	for (int64_t k = 0; k < n; k++)
		y[k] = (float)(exp(x[k] - mx) / sum);
}

static bool
op_softmax(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	if (!need_f32(r, x, "the input") || numel(x) != numel(o))
		return rerr(r, "operand does not fit the result");
	int64_t D = lastdim(x);
	for (int64_t i = 0; i < nrows(x); i++)
		softmax_row(x->f + i * D, o->f + i * D, D);
	return true;
}

/* Rotary embedding of row t at position pos + t, per head of head_dim hd, with
 * frequencies theta^(-2j/hd), j < hd/2, scaled (ir_rope_freq).  Style 0 (Hugging Face rotate_half) pairs
 * element j with j + hd/2; style 1 (llama2.c) pairs 2j with 2j + 1. */
static bool
op_rope(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	int32_t pos = 0;
	if (!need_f32(r, x, "the input") || !get_scalar_i32(r, arg(r, 1), "the position", &pos))
		return false;
	int64_t H = r->op->ia[0], W = lastdim(x), hd = r->op->ia[1] > 0 ? r->op->ia[1] : (H > 0 ? W / H : 0);
	int64_t style = r->op->ia[2];
	if (H <= 0 || hd <= 0 || H > W || hd > W || hd % 2 || H * hd != W || numel(o) != numel(x))
		return rerr(r, "%lld heads of size %lld do not fit rows of %lld", (long long)H, (long long)hd, (long long)W);
	if (style != 0 && style != 1)
		return rerr(r, "unknown rope style %lld", (long long)style);
	if (pos < 0)
		return rerr(r, "negative position %d", pos);
	for (int64_t t = 0; t < nrows(x); t++) {
		double p = (double)pos + (double)t;
		for (int64_t h = 0; h < H; h++) {
			const float *xi = x->f + t * W + h * hd;
			float *yo = o->f + t * W + h * hd;
			for (int64_t j = 0; j < hd / 2; j++) {
				double freq = ir_rope_freq(r->op, j, hd);
				double c = cos(p * freq), s = sin(p * freq);
				int64_t a = style == 0 ? j : 2 * j, b = style == 0 ? j + hd / 2 : 2 * j + 1;
				double x0 = xi[a], x1 = xi[b];
				yo[a] = (float)(x0 * c - x1 * s);
				yo[b] = (float)(x1 * c + x0 * s);
			}
		}
	}
	return true;
}

/* ---- attention: dense, Quest decode, block-sparse prefill (docs/sparse.md) ---- */

/* The operands of an attention op, checked, with the cache written. */
typedef struct Attn {
	int64_t H, KH, hd, T, group; /* heads, kv heads, head size, rows, heads per kv head */
	int64_t q0;                  /* row of k, v that query (and output) row 0 is: the one-row form's row */
	int32_t pos;                 /* position of row 0 (0 without a cache) */
	const float *q, *K, *V;      /* queries [T][H][hd]; keys and values [positions][KH][hd] */
	const State *st;             /* the cache (NULL: none, bidirectional over the rows) */
	int64_t si;
} Attn;

/* Extends the page bounds of state si with key row kr ([KH][hd]) at position p: the
 * first position of a page resets them to the key, later ones widen them.  Each key
 * is rounded outward to bf16 first (min toward -inf, max toward +inf: ir_bf16_floor,
 * ir_bf16_ceil); both roundings are monotonic, so the stored bounds are the rounded
 * extremes of the page's keys, and never NaN. */
static void
bounds_write(InterpState *s, int64_t si, int64_t p, const float *kr)
{
	const State *st = &s->m->states[si];
	uint16_t *b = s->bounds[si];
	if (!b)
		return;
	int64_t KH = st->kv_heads, hd = st->head_dim;
	int64_t np = interp_npages(st), pg = p / st->page;
	bool first = p % st->page == 0;
	for (int64_t g = 0; g < KH; g++)
		for (int64_t e = 0; e < hd; e++) {
			float x = kr[g * hd + e];
			uint16_t lo = ir_bf16_floor(x), hi = ir_bf16_ceil(x), *mn = b + (g * np + pg) * 2 * hd + e, *mx = mn + hd;
			*mn = first || ir_bf16_to_f32(lo) < ir_bf16_to_f32(*mn) ? lo : *mn;
			*mx = first || ir_bf16_to_f32(hi) > ir_bf16_to_f32(*mx) ? hi : *mx;
		}
}

/* Writes the T rows of k and v into cache si at positions pos..pos+T-1, and the
 * page bounds when it keeps them. */
static bool
cache_write(Run *r, int64_t si, const Tensor *k, const Tensor *v, int32_t pos)
{
	const Module *m = r->s->m;
	if (si < 0 || si >= (int64_t)m->nstates)
		return rerr(r, "state index %lld out of range", (long long)si);
	const State *st = &m->states[si];
	int64_t T = nrows(k), w = st->kv_heads * st->head_dim;
	if (lastdim(k) != w || lastdim(v) != w || nrows(v) != T)
		return rerr(r, "k and v do not fit state '%s'", st->name);
	if (pos < 0)
		return rerr(r, "negative position %d", pos);
	if ((int64_t)pos + T > st->ctx)
		return rerr(r, "position %lld past the context of %lld", (long long)pos + T - 1, (long long)st->ctx);
	for (int64_t t = 0; t < T; t++) {
		memcpy(r->s->kcache[si] + (pos + t) * w, k->f + t * w, (size_t)w * sizeof(float));
		memcpy(r->s->vcache[si] + (pos + t) * w, v->f + t * w, (size_t)w * sizeof(float));
		bounds_write(r->s, si, pos + t, k->f + t * w);
	}
	return true;
}

static bool
attn_setup(Run *r, Tensor *o, Attn *a)
{
	const Tensor *q = arg(r, 0), *k = arg(r, 1), *v = arg(r, 2);
	if (!need_f32(r, q, "q") || !need_f32(r, k, "k") || !need_f32(r, v, "v"))
		return false;
	const Module *m = r->s->m;
	int64_t H = r->op->ia[0], KH = r->op->ia[1], si = r->op->ia[2];
	bool one_row = r->op->code == OP_ATTENTION && q->rank == 1 && k->rank == 2;
	int64_t T = nrows(k), hd = H > 0 ? lastdim(q) / H : 0, q0 = r->op->ia[3] < 0 ? T + r->op->ia[3] : r->op->ia[3];
	if (H <= 0 || KH <= 0 || H % KH || hd <= 0 || H * hd != lastdim(q) || lastdim(k) != KH * hd ||
	    lastdim(v) != KH * hd || (!one_row && nrows(q) != T) || nrows(v) != T || numel(o) != numel(q))
		return rerr(r, "q, k, v do not fit %lld heads and %lld kv heads", (long long)H, (long long)KH);
	if (one_row && (q0 < 0 || q0 >= T))
		return rerr(r, "query row %lld out of range of %lld rows", (long long)r->op->ia[3], (long long)T);
	*a = (Attn){ .H = H, .KH = KH, .hd = hd, .T = T, .group = H / KH, .q0 = one_row ? q0 : 0, .q = q->f, .si = si };
	if (si < 0) {
		if (r->op->code != OP_ATTENTION)
			return rerr(r, "the sparse forms need a cache");
		a->K = k->f;
		a->V = v->f;
		return true;
	}
	if (si >= (int64_t)m->nstates)
		return rerr(r, "state index %lld out of range", (long long)si);
	const State *st = &m->states[si];
	if (st->kind != ST_KVCACHE || st->kv_heads != KH || st->head_dim != hd)
		return rerr(r, "state '%s' does not fit %lld kv heads of size %lld", st->name, (long long)KH, (long long)hd);
	if (r->op->code == OP_ATTENTION_QUEST && (st->page <= 0 || !r->s->bounds[si]))
		return rerr(r, "state '%s' keeps no page bounds", st->name);
	int32_t pos = 0;
	if (!get_scalar_i32(r, arg(r, 3), "the position", &pos) || !cache_write(r, si, k, v, pos))
		return false;
	a->st = st;
	a->pos = pos;
	a->K = r->s->kcache[si];
	a->V = r->s->vcache[si];
	return true;
}

/* Query head h of row t attends to positions list[0..n) (ascending), or to 0..n-1
 * when list is NULL; sc holds n floats.  The sparse forms call it with every
 * position when they select everything, so the arithmetic is the dense one. */
static void
attend_head(const Attn *a, int64_t t, int64_t h, const int64_t *list, int64_t n, float *sc, float *out)
{
	int64_t g = h / a->group, hd = a->hd, KH = a->KH;
	const float *qh = a->q + (t - a->q0) * a->H * hd + h * hd;
	double scale = 1.0 / sqrt((double)hd);
	for (int64_t i = 0; i < n; i++) {
		int64_t j = list ? list[i] : i;
		double acc = 0;
		for (int64_t e = 0; e < hd; e++)
			acc += (double)qh[e] * a->K[(j * KH + g) * hd + e];
		sc[i] = (float)(acc * scale);
	}
	softmax_row(sc, sc, n);
	for (int64_t e = 0; e < hd; e++) {
		double acc = 0;
		for (int64_t i = 0; i < n; i++)
			acc += (double)sc[i] * a->V[((list ? list[i] : i) * KH + g) * hd + e];
		out[(t - a->q0) * a->H * hd + h * hd + e] = (float)acc;
	}
}

/* Attention with grouped heads: query head h reads key/value head h / (H / KH).
 * With a cache (state index >= 0) rows t of k, v are stored at positions pos + t and
 * row t attends causally to positions 0 .. pos + t; without one (-1) every row
 * attends to every row of k, v.  Scores are scaled by 1/sqrt(head_dim).  The
 * one-row form (q of one row, k and v of T) computes only row q0's queries. */
static bool
op_attention(Run *r, Tensor *o)
{
	Attn a;
	if (!attn_setup(r, o, &a))
		return false;
	int64_t npos = a.st ? a.pos + a.T : a.T;
	float *sc = xmalloc((size_t)(npos ? npos : 1) * sizeof *sc);
	int64_t t1 = arg(r, 0)->rank < arg(r, 1)->rank ? a.q0 + 1 : a.T;
	for (int64_t t = a.q0; t < t1; t++)
		for (int64_t h = 0; h < a.H; h++)
			attend_head(&a, t, h, NULL, a.st ? a.pos + t + 1 : a.T, sc, o->f);
	free(sc);
	return true;
}

/* A selection candidate: its score and index; the order is score descending, then
 * index ascending (so ties pick the earlier page or block). */
typedef struct Cand {
	double score;
	int64_t idx;
} Cand;

static int
cand_cmp(const void *x, const void *y)
{
	const Cand *a = x, *b = y;
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* The positions of units [u0, u1) of `size` positions each, below n, appended to
 * list (ascending when called in unit order); returns the new length. */
static int64_t
add_units(int64_t *list, int64_t len, int64_t u0, int64_t u1, int64_t size, int64_t n)
{
	for (int64_t u = u0; u < u1; u++)
		for (int64_t j = u * size; j < (u + 1) * size && j < n; j++)
			list[len++] = j;
	return len;
}

/* The Quest page selection of kv head g for a query at position n - 1 (rows of the
 * group's heads at row t): pages [0, sp) (sinks) and [wp, npages) (window, the
 * current page) always, plus the K best of the pages between, by the upper bound
 * u = sum over the group's heads and channels of max(q * min, q * max).  Writes the
 * chosen pages' positions to list and returns their count, or -1 when every page is
 * chosen (the caller runs the dense code). */
static int64_t
quest_select(const Attn *a, const uint16_t *bounds, int64_t t, int64_t g, int64_t n, int64_t page,
             int64_t budget, int64_t sinks, int64_t window, int64_t *list, int64_t *npages_out)
{
	int64_t np = (n + page - 1) / page, hd = a->hd;
	int64_t K = budget == 0 ? 0 : budget / page > 3 ? budget / page : 3;
	int64_t sp = (sinks + page - 1) / page, wp = window > 0 ? (n > window ? (n - window) / page : 0) : np - 1;
	sp = sp < np ? sp : np;
	wp = wp < np - 1 ? wp : np - 1;
	wp = wp > sp ? wp : sp;
	*npages_out = np;
	if (wp - sp <= K)
		return -1;
	Cand *c = xmalloc((size_t)(wp - sp) * sizeof *c);
	for (int64_t p = sp; p < wp; p++) {
		const uint16_t *mn = bounds + (g * interp_npages(a->st) + p) * 2 * hd, *mx = mn + hd;
		double u = 0;
		for (int64_t h = g * a->group; h < (g + 1) * a->group; h++) {
			const float *qh = a->q + t * a->H * hd + h * hd;
			for (int64_t e = 0; e < hd; e++) {
				double lo = (double)qh[e] * ir_bf16_to_f32(mn[e]), hi = (double)qh[e] * ir_bf16_to_f32(mx[e]);
				u += lo > hi ? lo : hi;
			}
		}
		c[p - sp] = (Cand){ u, p };
	}
	qsort(c, (size_t)(wp - sp), sizeof *c, cand_cmp);
	bool *keep = xcalloc((size_t)np, 1);
	for (int64_t i = 0; i < K; i++)
		keep[c[i].idx] = true;
	for (int64_t p = 0; p < np; p++)
		keep[p] |= p < sp || p >= wp;
	int64_t len = 0, kept = 0;
	for (int64_t p = 0; p < np; p++)
		if (keep[p]) {
			len = add_units(list, len, p, p + 1, page, n);
			kept++;
		}
	free(keep);
	free(c);
	*npages_out = kept;
	return len;
}

/* Adds n to the stat slot a sparse attention op counts its visits in (ia[6] = slot
 * + 1; 0: none). */
static bool
count_visits(Run *r, int64_t n)
{
	int64_t k = r->op->ia[6];
	if (k < 0 || k > (int64_t)r->s->m->nstats)
		return rerr(r, "stat slot %lld out of range", (long long)k - 1);
	if (k > 0)
		r->s->stats.slots[k - 1] += n;
	return true;
}

/* attention_quest: the cache write of attention, then per row and kv head one page
 * selection shared by the group's query heads; the pages visited (every page when
 * it selects them all) are counted per row and kv head. */
static bool
op_attention_quest(Run *r, Tensor *o)
{
	Attn a;
	int32_t budget = 0;
	if (r->op->ia[3] < 0 || r->op->ia[4] < 0 || r->op->ia[5] < 0)
		return rerr(r, "budget, sinks and window must not be negative");
	if (!attn_setup(r, o, &a) || !get_scalar_i32(r, arg(r, 4), "the budget", &budget) || !count_visits(r, 0))
		return false;
	int64_t page = a.st->page, b = budget < r->op->ia[3] ? budget : r->op->ia[3];
	b = r->op->ia[3] == 0 ? 0 : b > page ? b : page; /* budget 0: sinks and window only */
	float *sc = xmalloc((size_t)(a.pos + a.T) * sizeof *sc);
	int64_t *list = xmalloc((size_t)(a.pos + a.T) * sizeof *list);
	for (int64_t t = 0; t < a.T; t++) {
		int64_t n = a.pos + t + 1;
		for (int64_t g = 0; g < a.KH; g++) {
			int64_t visited = 0;
			int64_t len = quest_select(&a, r->s->bounds[a.si], t, g, n, page, b, r->op->ia[4], r->op->ia[5],
			                                  list, &visited);
			for (int64_t h = g * a.group; h < (g + 1) * a.group; h++)
				attend_head(&a, t, h, len < 0 ? NULL : list, len < 0 ? n : len, sc, o->f);
			r->s->pages_visited += visited;
			count_visits(r, visited);
		}
	}
	free(list);
	free(sc);
	return true;
}

/* attention_block: rows in query blocks of `block` positions (absolute, from 0); per
 * kv head and query block, block scores from the mean of the block's queries (of this
 * call) and the mean keys of each key block up to the block's last row, summed over
 * the group's heads; the first and the diagonal block always, plus the topk best (or,
 * topk 0, the fewest best whose estimated attention mass, n_b exp(score / group),
 * reaches gamma of the total).  Calls of fewer than min_tokens rows are dense.  The
 * key blocks visited are counted per row and kv head (all of them when dense). */
static bool
op_attention_block(Run *r, Tensor *o)
{
	Attn a;
	if (r->op->ia[3] < 1 || r->op->ia[4] < 0 || r->op->ia[5] < 0)
		return rerr(r, "block must be positive, topk and min_tokens not negative");
	if (r->op->ia[4] == 0 && !(r->op->fa[0] > 0 && r->op->fa[0] <= 1))
		return rerr(r, "gamma must be in (0, 1] without topk");
	if (!attn_setup(r, o, &a) || !count_visits(r, 0))
		return false;
	int64_t B = r->op->ia[3], topk = r->op->ia[4], hd = a.hd;
	double gamma = r->op->fa[0], scale = 1.0 / sqrt((double)hd);
	int64_t npos = a.pos + a.T, last = npos - 1;
	float *sc = xmalloc((size_t)npos * sizeof *sc);
	int64_t *list = xmalloc((size_t)npos * sizeof *list);
	int64_t nkb = last / B + 1;
	Cand *c = xmalloc((size_t)nkb * sizeof *c);
	double *qbar = xmalloc((size_t)(a.group * hd) * sizeof *qbar), *kbar = xmalloc((size_t)hd * sizeof *kbar);
	bool dense = a.T < r->op->ia[5];
	for (int64_t qb = a.pos / B; qb <= last / B; qb++) {
		int64_t t0 = (qb * B > a.pos ? qb * B : a.pos) - a.pos, t1 = ((qb + 1) * B < npos ? (qb + 1) * B : npos) - a.pos;
		int64_t end = a.pos + t1; /* keys visible to the block: [0, end) */
		for (int64_t g = 0; g < a.KH; g++) {
			int64_t len = -1, nsel = qb + 1; /* blocks visited by each row of the block */
			if (!dense && qb >= 2) {
				for (int64_t h = 0; h < a.group; h++)
					for (int64_t e = 0; e < hd; e++) {
						double acc = 0;
						for (int64_t t = t0; t < t1; t++)
							acc += a.q[t * a.H * hd + (g * a.group + h) * hd + e];
						qbar[h * hd + e] = acc / (double)(t1 - t0);
					}
				double smax = -INFINITY;
				for (int64_t kb = 0; kb <= qb; kb++) {
					int64_t j1 = (kb + 1) * B < end ? (kb + 1) * B : end;
					for (int64_t e = 0; e < hd; e++) {
						double acc = 0;
						for (int64_t j = kb * B; j < j1; j++)
							acc += a.K[(j * a.KH + g) * hd + e];
						kbar[e] = acc / (double)(j1 - kb * B);
					}
					double s = 0;
					for (int64_t h = 0; h < a.group; h++)
						for (int64_t e = 0; e < hd; e++)
							s += qbar[h * hd + e] * kbar[e];
					c[kb] = (Cand){ s * scale, kb };
					smax = c[kb].score > smax ? c[kb].score : smax;
				}
				/* the candidates 1 .. qb-1, best first */
				int64_t ncand = qb - 1, take = topk;
				if (topk == 0) {
					double total = 0, covered = 0;
					for (int64_t kb = 0; kb <= qb; kb++) {
						int64_t j1 = (kb + 1) * B < end ? (kb + 1) * B : end;
						double mass = (double)(j1 - kb * B) * exp((c[kb].score - smax) / (double)a.group);
						total += mass;
						if (kb == 0 || kb == qb)
							covered += mass;
					}
					qsort(c + 1, (size_t)ncand, sizeof *c, cand_cmp);
					for (take = 0; take < ncand && covered < gamma * total; take++)
						covered += (double)B * exp((c[1 + take].score - smax) / (double)a.group);
				} else {
					qsort(c + 1, (size_t)ncand, sizeof *c, cand_cmp);
				}
				if (take < ncand) {
					bool *keep = xcalloc((size_t)qb + 1, 1);
					keep[0] = keep[qb] = true;
					for (int64_t i = 0; i < take; i++)
						keep[c[1 + i].idx] = true;
					nsel = 2 + take;
					len = 0;
					for (int64_t kb = 0; kb <= qb; kb++)
						if (keep[kb])
							len = add_units(list, len, kb, kb + 1, B, end);
					free(keep);
				}
			}
			for (int64_t t = t0; t < t1; t++) {
				int64_t n = a.pos + t + 1, nl = len;
				while (len >= 0 && nl > 0 && list[nl - 1] >= n) /* causal within the diagonal block */
					nl--;
				for (int64_t h = g * a.group; h < (g + 1) * a.group; h++)
					attend_head(&a, t, h, len < 0 ? NULL : list, len < 0 ? n : nl, sc, o->f);
			}
			count_visits(r, nsel * (t1 - t0));
		}
	}
	free(qbar);
	free(kbar);
	free(c);
	free(list);
	free(sc);
	return true;
}

static bool
op_argmax(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	if (!need_f32(r, x, "the input") || o->dt != DT_I32 || numel(o) != nrows(x))
		return rerr(r, "operand does not fit the result");
	int64_t N = lastdim(x);
	for (int64_t i = 0; i < nrows(x); i++) {
		int64_t best = 0;
		for (int64_t k = 1; k < N; k++)
			if (x->f[i * N + k] > x->f[i * N + best])
				best = k;
		o->i[i] = (int32_t)best;
	}
	return true;
}

/* Position start + t of token t; the same overflow and sign limits as the entry's
 * position argument, so an index it yields is a valid i32. */
static bool
op_positions(Run *r, Tensor *o)
{
	const Tensor *tok = arg(r, 0);
	int32_t start = 0;
	if (tok->dt != DT_I32 || !tok->i || o->dt != DT_I32 || numel(o) != numel(tok))
		return rerr(r, "token ids must be i32 of the result's shape");
	if (!get_scalar_i32(r, arg(r, 1), "the start position", &start))
		return false;
	if (start < 0)
		return rerr(r, "negative position %d", start);
	if ((int64_t)start + numel(o) - 1 > INT32_MAX)
		return rerr(r, "position %lld does not fit i32", (long long)start + numel(o) - 1);
	for (int64_t t = 0; t < numel(o); t++)
		o->i[t] = (int32_t)(start + t);
	return true;
}

static bool
op_row(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	int64_t R = x->rank >= 1 ? x->d[0] : 0, idx = r->op->ia[0];
	if (x->rank < 1 || x->dt != o->dt || numel(o) * R != numel(x))
		return rerr(r, "operand does not fit the result");
	if (idx < 0)
		idx += R;
	if (idx < 0 || idx >= R)
		return rerr(r, "row %lld out of range of %lld rows", (long long)r->op->ia[0], (long long)R);
	int64_t n = numel(o);
	if (o->dt == DT_I32)
		memcpy(o->i, x->i + idx * n, (size_t)n * sizeof(int32_t));
	else
		memcpy(o->f, x->f + idx * n, (size_t)n * sizeof(float));
	return true;
}

/* slice and concat along the last axis */
static bool
op_slice(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	int64_t W = lastdim(x), start = r->op->ia[0], len = r->op->ia[1];
	if (!need_f32(r, x, "the input") || start < 0 || len < 0 || start > W || len > W - start ||
	    lastdim(o) != len || nrows(o) != nrows(x))
		return rerr(r, "slice [%lld, +%lld) does not fit rows of %lld", (long long)start, (long long)len,
		            (long long)W);
	for (int64_t i = 0; i < nrows(x); i++)
		memcpy(o->f + i * len, x->f + i * W + start, (size_t)len * sizeof(float));
	return true;
}

static bool
op_concat(Run *r, Tensor *o)
{
	int64_t W = lastdim(o), R = nrows(o), at = 0;
	for (int a = 0; a < r->op->nargs; a++) {
		const Tensor *x = arg(r, a);
		if (!need_f32(r, x, "every operand") || nrows(x) != R || at + lastdim(x) > W)
			return rerr(r, "operand %d does not fit the result", a);
		for (int64_t i = 0; i < R; i++)
			memcpy(o->f + i * W + at, x->f + i * lastdim(x), (size_t)lastdim(x) * sizeof(float));
		at += lastdim(x);
	}
	if (at != W)
		return rerr(r, "operands give %lld columns, the result has %lld", (long long)at, (long long)W);
	return true;
}

/* ---- the run loop ---- */

/* ---- control flow, predicates and measures ---- */

/* A bool value: held as one i32. */
static bool
is_pred(const Tensor *t)
{
	return t->dt == DT_I32 && t->i && numel(t) == 1;
}


static bool
op_logic(Run *r, Tensor *o)
{
	for (int a = 0; a < r->op->nargs; a++)
		if (!is_pred(arg(r, a)))
			return rerr(r, "operand %d must be a bool", a);
	if (!is_pred(o))
		return rerr(r, "the result must be a bool");
	bool x = arg(r, 0)->i[0] != 0, y = r->op->nargs > 1 && arg(r, 1)->i[0] != 0;
	o->i[0] = r->op->code == OP_AND ? x && y : r->op->code == OP_OR ? x || y : !x;
	return true;
}

static bool
op_kv_write(Run *r)
{
	const Tensor *k = arg(r, 0), *v = arg(r, 1);
	int32_t pos = 0;
	if (!need_f32(r, k, "k") || !need_f32(r, v, "v") || !get_scalar_i32(r, arg(r, 2), "the position", &pos))
		return false;
	return cache_write(r, r->op->ia[2], k, v, pos);
}

/* Element k of a tensor as a double (f32 or i32). */
static double
elem(const Tensor *t, int64_t k)
{
	return t->dt == DT_F32 ? (double)t->f[k] : (double)t->i[k];
}

static bool
op_cmp(Run *r, Tensor *o)
{
	const Tensor *a = arg(r, 0), *b = arg(r, 1);
	int64_t n = numel(a), nb = numel(b);
	if (a->dt != b->dt || (nb != n && nb != 1) || nb < 1 || (a->dt == DT_F32 ? !a->f || !b->f : !a->i || !b->i))
		return rerr(r, "operands do not fit each other");
	if (!is_pred(o))
		return rerr(r, "the result must be a bool");
	bool all = true;
	for (int64_t k = 0; k < n && all; k++) {
		double x = elem(a, k), y = elem(b, nb == 1 ? 0 : k);
		switch (r->op->ia[0]) {
		case 0: all = x > y; break;
		case 1: all = x >= y; break;
		case 2: all = x < y; break;
		case 3: all = x <= y; break;
		case 4: all = x == y; break;
		case 5: all = x != y; break;
		default: return rerr(r, "unknown predicate %lld", (long long)r->op->ia[0]);
		}
	}
	o->i[0] = all;
	return true;
}

/* Softmax of each row in double, then the measure of the op; the least confident row
 * decides (smallest margin or top probability, largest entropy). */
static bool
op_measure(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	if (!need_f32(r, x, "the logits") || o->dt != DT_F32 || numel(o) != 1)
		return rerr(r, "expected f32 logits and a scalar result");
	int64_t N = lastdim(x), R = nrows(x);
	double worst = r->op->code == OP_ENTROPY ? -INFINITY : INFINITY;
	for (int64_t i = 0; i < R; i++) {
		const float *row = x->f + i * N;
		double mx = -INFINITY, sum = 0, p1 = -1, p2 = 0, h = 0;
		for (int64_t k = 0; k < N; k++)
			mx = row[k] > mx ? row[k] : mx;
		for (int64_t k = 0; k < N; k++)
			sum += exp((double)row[k] - mx);
		for (int64_t k = 0; k < N; k++) {
			double p = exp((double)row[k] - mx) / sum;
			if (p > p1) {
				p2 = p1 < 0 ? 0 : p1;
				p1 = p;
			} else if (p > p2) {
				p2 = p;
			}
			h -= p > 0 ? p * log(p) : 0;
		}
		double c = r->op->code == OP_MARGIN ? p1 - p2 : r->op->code == OP_MAXPROB ? p1 : h;
		if (r->op->code == OP_ENTROPY ? c > worst : c < worst)
			worst = c;
	}
	o->f[0] = (float)worst;
	return true;
}

static bool
op_cosine(Run *r, Tensor *o)
{
	const Tensor *a = arg(r, 0), *b = arg(r, 1);
	if (!need_f32(r, a, "a") || !need_f32(r, b, "b") || numel(a) != numel(b) || lastdim(a) != lastdim(b) ||
	    o->dt != DT_F32 || numel(o) != 1)
		return rerr(r, "the states do not fit each other");
	int64_t D = lastdim(a);
	double worst = INFINITY;
	for (int64_t i = 0; i < nrows(a); i++) {
		double ab = 0, aa = 0, bb = 0;
		for (int64_t k = 0; k < D; k++) {
			double x = a->f[i * D + k], y = b->f[i * D + k];
			ab += x * y;
			aa += x * x;
			bb += y * y;
		}
		double c = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
		worst = c < worst ? c : worst;
	}
	o->f[0] = (float)worst;
	return true;
}

static bool
op_decay(Run *r, Tensor *o)
{
	const Tensor *lam = arg(r, 0), *tau = arg(r, 1);
	int32_t pos = 0;
	if (!need_f32(r, lam, "lambda") || !need_f32(r, tau, "tau") ||
	    !get_scalar_i32(r, arg(r, 2), "the position", &pos))
		return false;
	if (r->op->ia[0] < 1 || o->dt != DT_F32 || numel(o) != 1 || numel(lam) != 1 || numel(tau) != 1)
		return rerr(r, "expected scalars and a length n >= 1");
	double n = (double)r->op->ia[0];
	o->f[0] = (float)((double)lam->f[0] * (0.9 + 0.1 * exp(-(double)tau->f[0] * (double)pos / n)));
	return true;
}

static bool
op_knob(Run *r, Tensor *o)
{
	int64_t k = r->op->ia[0];
	if (k < 0 || k >= (int64_t)r->s->m->nknobs || numel(o) != 1)
		return rerr(r, "knob index %lld out of range", (long long)k);
	if (o->dt == DT_F32)
		o->f[0] = (float)r->s->knobs[k];
	else
		o->i[0] = (int32_t)r->s->knobs[k];
	return true;
}

/* knob_set: the context's knob takes the value, clamped to the knob's range (a
 * choice a prefill makes for later steps). */
static bool
op_knob_set(Run *r)
{
	int64_t k = r->op->ia[0];
	const Tensor *v = arg(r, 0);
	if (k < 0 || k >= (int64_t)r->s->m->nknobs || numel(v) != 1 || (v->dt == DT_F32 ? !v->f : !v->i))
		return rerr(r, "knob index %lld out of range, or a value that is not a scalar", (long long)k);
	const Knob *kn = &r->s->m->knobs[k];
	double x = v->dt == DT_F32 ? (double)v->f[0] : (double)v->i[0];
	r->s->knobs[k] = x < kn->lo ? kn->lo : x > kn->hi ? kn->hi : x;
	return true;
}

static bool
op_stat(Run *r)
{
	int64_t k = r->op->ia[0];
	if (k < 0 || k >= (int64_t)r->s->m->nstats)
		return rerr(r, "stat slot %lld out of range", (long long)k);
	r->s->stats.slots[k] += r->op->ia[1]; /* once per call that runs it (ops.def) */
	return true;
}

/* Ops whose result is always f32: every elementwise op, and these. */
static bool
makes_f32(Opcode c)
{
	if (ir_op_flags[c] & OPF_ELEMWISE)
		return true;
	switch (c) {
	case OP_EMBED: case OP_LINEAR: case OP_RMSNORM: case OP_LAYERNORM: case OP_SOFTMAX: case OP_ROPE:
	case OP_ATTENTION: case OP_ATTENTION_QUEST: case OP_ATTENTION_BLOCK: case OP_SLICE: case OP_CONCAT:
	case OP_PARAM:
		return true;
	default:
		return false;
	}
}

/* One op.  The switch names every opcode and has no default: a new op of ops.def
 * does not build until it is handled here (-Wswitch-enum is an error). */
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wswitch"
#pragma GCC diagnostic error "-Wswitch-enum"
static bool
eval(Run *r, const Op *op, Tensor *o, const int32_t *tokens, int64_t ntokens, int32_t pos)
{
	const Module *m = r->s->m;
	if (makes_f32(op->code) && o->dt != DT_F32)
		return rerr(r, "the result must be f32");
	switch (op->code) {
	case OP_ARG: {
		int64_t idx = op->ia[0];
		if (idx < 0 || idx >= (int64_t)r->f->nargs)
			return rerr(r, "argument index %lld out of range", (long long)idx);
		const Arg *a = &r->f->args[idx];
		if (a->type.dtype != DT_I32 || o->dt != DT_I32)
			return rerr(r, "argument '%s' is not i32", a->name);
		/* the position: an argument named 'pos', or a second scalar argument */
		bool is_pos = strcmp(a->name, "pos") == 0 || (idx == 1 && a->type.rank == 0);
		if (is_pos) {
			if (numel(o) != 1)
				return rerr(r, "argument 'pos' must be a scalar");
			o->i[0] = pos;
		} else if (numel(o) == ntokens) {
			memcpy(o->i, tokens, (size_t)ntokens * sizeof *tokens);
		} else {
			return rerr(r, "argument '%s' takes %lld tokens, got %lld", a->name, (long long)numel(o),
			            (long long)ntokens);
		}
		return true;
	}
	case OP_PARAM: {
		int64_t idx = op->ia[0];
		if (idx < 0 || idx >= (int64_t)m->nparams)
			return rerr(r, "param index %lld out of range", (long long)idx);
		const Param *p = &m->params[idx];
		if (!p->data)
			return rerr(r, "param '%s' has no data (weights not loaded)", p->name);
		if (ir_type_numel(p->type) != numel(o) || o->dt != DT_F32)
			return rerr(r, "param '%s' does not fit its value's type", p->name);
		o->f = p->data;
		o->owned = false;
		return true;
	}
	case OP_CONST:
		for (int64_t i = 0; i < numel(o); i++) {
			if (o->dt == DT_I32)
				o->i[i] = (int32_t)op->ia[0];
			else
				o->f[i] = op->fa[0];
		}
		return true;
	case OP_EMBED: return op_embed(r, o);
	case OP_LINEAR: return op_linear(r, o);
	case OP_ADD:
	case OP_SUB:
	case OP_MUL: return op_binary(r, o);
	case OP_SCALE:
	case OP_SILU:
	case OP_GELU:
	case OP_TANH: return op_unary(r, o);
	case OP_RMSNORM:
	case OP_LAYERNORM: return op_norm(r, o);
	case OP_SOFTMAX: return op_softmax(r, o);
	case OP_ROPE: return op_rope(r, o);
	case OP_ATTENTION: return op_attention(r, o);
	case OP_ATTENTION_QUEST: return op_attention_quest(r, o);
	case OP_ATTENTION_BLOCK: return op_attention_block(r, o);
	case OP_ARGMAX: return op_argmax(r, o);
	case OP_POSITIONS: return op_positions(r, o);
	case OP_ROW: return op_row(r, o);
	case OP_SLICE: return op_slice(r, o);
	case OP_CONCAT: return op_concat(r, o);
	case OP_CMP: return op_cmp(r, o);
	case OP_AND:
	case OP_OR:
	case OP_NOT: return op_logic(r, o);
	case OP_MARGIN:
	case OP_MAXPROB:
	case OP_ENTROPY: return op_measure(r, o);
	case OP_COSINE: return op_cosine(r, o);
	case OP_DECAY: return op_decay(r, o);
	case OP_KNOB: return op_knob(r, o);
	case OP_KV_WRITE: return op_kv_write(r);
	case OP_STAT: return op_stat(r);
	case OP_KNOB_SET: return op_knob_set(r);
	/* the run loop carries these out itself */
	case OP_SELECT:
	case OP_PHI:
	case OP_IF:
	case OP_ELSE:
	case OP_END:
	case OP_RET: return true;
	case OP_COUNT: break;
	}
	return rerr(r, "unknown opcode %d", (int)op->code);
}
#pragma GCC diagnostic pop

/* Sets o's actual shape from the value's type; a dynamic first dim takes the actual
 * length of the first operand with one (or the token count for arguments). */
static bool
shape_of(Run *r, const Op *op, Tensor *o, int64_t ntokens)
{
	Type t = r->f->vals[op->dst].type;
	if (t.dtype != DT_F32 && t.dtype != DT_I32 && t.dtype != DT_BOOL)
		return rerr(r, "values of type %s are not supported", ir_dtype_name(t.dtype));
	if (t.rank > IR_MAX_RANK)
		return rerr(r, "rank %d out of range", t.rank);
	o->dt = t.dtype == DT_BOOL ? DT_I32 : t.dtype; /* a predicate is held as i32 0 or 1 */
	o->rank = t.rank;
	int64_t n = 1;
	for (int k = 0; k < t.rank; k++) {
		if (t.dims[k] < 0 || t.dims[k] > INTERP_MAX_NUMEL || (n *= t.dims[k] ? t.dims[k] : 1) > INTERP_MAX_NUMEL)
			return rerr(r, "value of type %s too large for the interpreter",
			            ir_type_str(t, (char[64]){ 0 }, 64));
		o->d[k] = t.dims[k];
	}
	if (!t.dyn0)
		return true;
	if (op->code == OP_ARG) {
		if (ntokens > t.dims[0])
			return rerr(r, "sequence of %lld tokens longer than the bound of %lld", (long long)ntokens,
			            (long long)t.dims[0]);
		o->d[0] = ntokens;
		return true;
	}
	for (int a = 0; a < op->nargs; a++) {
		ValueId v = op->args[a];
		if (r->f->vals[v].type.dyn0 && r->vals[v].rank > 0) {
			o->d[0] = r->vals[v].d[0];
			return true;
		}
	}
	return rerr(r, "cannot resolve the dynamic dimension");
}

/* phi and select: the result is an alias of the operand chosen by the branch taken or
 * by the condition, which must have the result's shape. */
static bool
alias_chosen(Run *r, const Op *op, uint32_t i, Tensor *o)
{
	int k;
	if (op->code == OP_PHI) {
		k = r->taken[r->partner[i]] ? 0 : 1;
	} else {
		if (!is_pred(&r->vals[op->args[0]]))
			return rerr(r, "the condition must be a bool");
		k = r->vals[op->args[0]].i[0] ? 1 : 2;
	}
	const Tensor *src = &r->vals[op->args[k]];
	if (src->dt != o->dt || numel(src) != numel(o) || src->rank != o->rank)
		return rerr(r, "operand %d does not have the result's type", k);
	*o = *src;
	o->owned = false;
	return true;
}

/* The operands op i reads exist on the path taken: defined earlier, and computed (a
 * value of a branch that did not run has no data).  A phi reads only one of its two. */
static bool
operands_ready(Run *r, const Op *op, uint32_t i)
{
	const Func *f = r->f;
	if (op->dst >= f->nvals || op->nargs > IR_MAX_OPERANDS || (unsigned)op->code >= OP_COUNT)
		return rerr(r, "malformed op");
	if (ir_op_arity[op->code] >= 0 && op->nargs != ir_op_arity[op->code])
		return rerr(r, "expected %d operands, saw %d", ir_op_arity[op->code], op->nargs);
	int only = op->code == OP_PHI ? (r->taken[r->partner[i]] ? 0 : 1) : -1;
	for (int a = 0; a < op->nargs; a++) {
		if (only >= 0 && a != only)
			continue;
		ValueId v = op->args[a];
		if (v >= f->nvals || f->vals[v].def >= i || (!r->vals[v].f && !r->vals[v].i))
			return rerr(r, "operand %d is not defined before its use on the path taken", a);
	}
	return true;
}

bool
interp_run(InterpState *s, const char *fn, const int32_t *tokens, int64_t ntokens, int32_t pos,
           float *out, char *err, size_t nerr)
{
	Run r = { .s = s, .err = err, .nerr = nerr };
	const Func *f = ir_find_func(s->m, fn);
	if (!f)
		return rerr(&r, "no entry '%s' in model '%s'", fn, s->m->name);
	if (f->kind == FN_HELPER)
		return rerr(&r, "'%s' of model '%s' is not an entry", fn, s->m->name);
	r.f = f;
	if (ntokens < 1 || !tokens)
		return rerr(&r, "entry '%s' needs at least one token", fn);
	if (pos < 0)
		return rerr(&r, "negative position %d", pos);
	r.vals = xcalloc(f->nvals + 1, sizeof *r.vals);
	r.partner = xmalloc((f->nops + 1) * sizeof *r.partner);
	r.taken = xcalloc(f->nops + 1, sizeof *r.taken);
	char rmsg[160];
	bool ok = ir_match_regions(f, r.partner, rmsg, sizeof rmsg, NULL) || rerr(&r, "%s", rmsg);
	const Tensor *result = NULL;
	const Op *ret = NULL;
	for (uint32_t i = 0; i < f->nops && ok;) {
		const Op *op = &f->ops[i];
		r.op = op;
		if (!operands_ready(&r, op, i)) {
			ok = false;
			break;
		}
		uint32_t next = i + 1;
		if (op->code == OP_RET) {
			if (op->nargs < 1)
				ok = rerr(&r, "returns nothing");
			else
				result = &r.vals[op->args[0]];
			ret = op;
			break;
		}
		if (op->code == OP_IF) {
			if (!is_pred(&r.vals[op->args[0]])) {
				ok = rerr(&r, "the condition must be a bool");
				break;
			}
			r.taken[i] = r.vals[op->args[0]].i[0] != 0;
			next = r.taken[i] ? i + 1 : r.partner[i] + 1; /* past the else, or past the end */
		} else if (op->code == OP_ELSE) {
			next = r.partner[i] + 1; /* the first branch ran: past the end */
		}
		if (op->code == OP_IF || op->code == OP_ELSE || op->code == OP_END) {
			i = next;
			continue;
		}
		Tensor *o = &r.vals[op->dst];
		if (!shape_of(&r, op, o, ntokens)) {
			ok = false;
			break;
		}
		if (op->code == OP_PHI || op->code == OP_SELECT) {
			ok = alias_chosen(&r, op, i, o);
			i = next;
			continue;
		}
		int64_t n = numel(o);
		o->owned = true;
		if (o->dt == DT_I32)
			o->i = xcalloc((size_t)(n ? n : 1), sizeof(int32_t));
		else if (op->code != OP_PARAM)
			o->f = xcalloc((size_t)(n ? n : 1), sizeof(float));
		ok = eval(&r, op, o, tokens, ntokens, pos);
		if (ok && s->hook && o->dt == DT_F32)
			s->hook(s->hook_user, f, op, o->f, o->rank >= 2 ? nrows(o) : 1, lastdim(o));
		i = next;
	}
	if (ok && !result)
		ok = rerr(&r, "entry '%s' has no 'ret'", fn);
	/* the caller sized out from the declared return type: the value must fit it */
	if (ok && (f->nrets < 1 || f->rets[0].dtype != result->dt || numel(result) > ir_type_numel(f->rets[0]) ||
	           (!f->rets[0].dyn0 && numel(result) != ir_type_numel(f->rets[0]))))
		ok = rerr(&r, "the returned value does not match the declared return type of '%s'", fn);
	if (ok) {
		int64_t n = numel(result);
		s->stats.calls++;
		s->stats.tokens += ntokens;
		s->stats.layers += ntokens * (ret->ia[0] > 0 ? ret->ia[0] : s->m->nlayers);
		if (result->dt == DT_I32)
			memcpy(out, result->i, (size_t)n * sizeof(int32_t));
		else
			memcpy(out, result->f, (size_t)n * sizeof(float));
	}
	for (uint32_t v = 0; v < f->nvals; v++)
		if (r.vals[v].owned) {
			free(r.vals[v].f);
			free(r.vals[v].i);
		}
	free(r.vals);
	free(r.partner);
	free(r.taken);
	return ok;
}
