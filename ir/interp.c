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
	InterpOpHook hook;
	void *hook_user;
};

/* The context of one run: where errors go and the value table. */
typedef struct Run {
	InterpState *s;
	const Func *f;
	const Op *op;       /* op being evaluated (for messages) */
	Tensor *vals;       /* [f->nvals] */
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

InterpState *
interp_new(const Module *m)
{
	InterpState *s = xcalloc(1, sizeof *s);
	s->m = m;
	s->kcache = xcalloc(m->nstates + 1, sizeof *s->kcache);
	s->vcache = xcalloc(m->nstates + 1, sizeof *s->vcache);
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *st = &m->states[i];
		int64_t n = st->ctx * st->kv_heads * st->head_dim;
		if (st->kind != ST_KVCACHE || st->ctx <= 0 || st->kv_heads <= 0 || st->head_dim <= 0)
			n = 0;
		s->kcache[i] = xcalloc((size_t)(n ? n : 1), sizeof(float));
		s->vcache[i] = xcalloc((size_t)(n ? n : 1), sizeof(float));
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
	}
	free(s->kcache);
	free(s->vcache);
	free(s);
}

void
interp_reset(InterpState *s)
{
	for (uint32_t i = 0; i < s->m->nstates; i++) {
		const State *st = &s->m->states[i];
		if (st->kind == ST_KVCACHE && st->ctx > 0 && st->kv_heads > 0 && st->head_dim > 0) {
			size_t n = (size_t)(st->ctx * st->kv_heads * st->head_dim);
			memset(s->kcache[i], 0, n * sizeof(float));
			memset(s->vcache[i], 0, n * sizeof(float));
		}
	}
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
		o->f[i] = r->op->code == OP_ADD ? x + y : r->op->code == OP_SUB ? x - y : x * y;
	}
	return true;
}

static bool
op_unary(Run *r, Tensor *o)
{
	const Tensor *x = arg(r, 0);
	if (!need_f32(r, x, "the input") || numel(x) != numel(o))
		return rerr(r, "operand does not fit the result");
	for (int64_t i = 0; i < numel(o); i++) {
		double v = x->f[i], y;
		switch (r->op->code) {
		case OP_SCALE: y = v * r->op->fa[0]; break;
		case OP_SILU: y = v / (1.0 + exp(-v)); break;
		case OP_TANH: y = tanh(v); break;
		case OP_GELU:
			if (r->op->ia[0] == 1)
				y = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
			else
				y = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
			break;
		default: return rerr(r, "not a unary op");
		}
		o->f[i] = (float)y;
	}
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
 * frequencies theta^(-2j/hd), j < hd/2.  Style 0 (Hugging Face rotate_half) pairs
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
	double theta = r->op->fa[0];
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
				double freq = pow(theta, -2.0 * (double)j / (double)hd);
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

/* Attention with grouped heads: query head h reads key/value head h / (H / KH).
 * With a cache (state index >= 0) rows t of k, v are stored at positions pos + t and
 * row t attends causally to positions 0 .. pos + t; without one (-1) every row
 * attends to every row of k, v.  Scores are scaled by 1/sqrt(head_dim). */
static bool
op_attention(Run *r, Tensor *o)
{
	const Tensor *q = arg(r, 0), *k = arg(r, 1), *v = arg(r, 2);
	if (!need_f32(r, q, "q") || !need_f32(r, k, "k") || !need_f32(r, v, "v"))
		return false;
	const Module *m = r->s->m;
	int64_t H = r->op->ia[0], KH = r->op->ia[1], si = r->op->ia[2];
	int64_t T = nrows(q), hd = H > 0 ? lastdim(q) / H : 0;
	if (H <= 0 || KH <= 0 || H % KH || hd <= 0 || H * hd != lastdim(q) || lastdim(k) != KH * hd ||
	    lastdim(v) != KH * hd || nrows(k) != T || nrows(v) != T || numel(o) != numel(q))
		return rerr(r, "q, k, v do not fit %lld heads and %lld kv heads", (long long)H, (long long)KH);
	int64_t group = H / KH, npos;
	int32_t pos = 0;
	const float *K, *Vc;
	if (si >= 0) {
		if (si >= (int64_t)m->nstates)
			return rerr(r, "state index %lld out of range", (long long)si);
		const State *st = &m->states[si];
		if (st->kind != ST_KVCACHE || st->kv_heads != KH || st->head_dim != hd)
			return rerr(r, "state '%s' does not fit %lld kv heads of size %lld", st->name, (long long)KH,
			            (long long)hd);
		if (!get_scalar_i32(r, arg(r, 3), "the position", &pos))
			return false;
		if (pos < 0)
			return rerr(r, "negative position %d", pos);
		if ((int64_t)pos + T > st->ctx)
			return rerr(r, "position %lld past the context of %lld", (long long)pos + T - 1, (long long)st->ctx);
		float *kc = r->s->kcache[si], *vc = r->s->vcache[si];
		for (int64_t t = 0; t < T; t++) {
			memcpy(kc + (pos + t) * KH * hd, k->f + t * KH * hd, (size_t)(KH * hd) * sizeof(float));
			memcpy(vc + (pos + t) * KH * hd, v->f + t * KH * hd, (size_t)(KH * hd) * sizeof(float));
		}
		K = kc;
		Vc = vc;
	} else {
		K = k->f;
		Vc = v->f;
	}
	double scale = 1.0 / sqrt((double)hd);
	npos = si >= 0 ? pos + T : T;
	float *sc = xmalloc((size_t)(npos ? npos : 1) * sizeof *sc);
	for (int64_t t = 0; t < T; t++) {
		int64_t n = si >= 0 ? pos + t + 1 : T; /* positions visible to row t */
		for (int64_t h = 0; h < H; h++) {
			int64_t g = h / group;
			const float *qh = q->f + t * H * hd + h * hd;
			for (int64_t j = 0; j < n; j++) {
				double acc = 0;
				for (int64_t e = 0; e < hd; e++)
					acc += (double)qh[e] * K[(j * KH + g) * hd + e];
				sc[j] = (float)(acc * scale);
			}
			softmax_row(sc, sc, n);
			for (int64_t e = 0; e < hd; e++) {
				double acc = 0;
				for (int64_t j = 0; j < n; j++)
					acc += (double)sc[j] * Vc[(j * KH + g) * hd + e];
				o->f[t * H * hd + h * hd + e] = (float)acc;
			}
		}
	}
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
	if (x->rank < 2 || x->dt != o->dt || numel(o) * R != numel(x))
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

/* Ops whose result is always f32. */
static bool
makes_f32(Opcode c)
{
	switch (c) {
	case OP_EMBED: case OP_LINEAR: case OP_SCALE: case OP_SILU: case OP_GELU: case OP_TANH:
	case OP_RMSNORM: case OP_LAYERNORM: case OP_SOFTMAX: case OP_ROPE: case OP_ATTENTION:
	case OP_SLICE: case OP_CONCAT: case OP_PARAM: case OP_ADD: case OP_SUB: case OP_MUL:
		return true;
	default:
		return false;
	}
}

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
	case OP_ARGMAX: return op_argmax(r, o);
	case OP_POSITIONS: return op_positions(r, o);
	case OP_ROW: return op_row(r, o);
	case OP_SLICE: return op_slice(r, o);
	case OP_CONCAT: return op_concat(r, o);
	case OP_RET: return true;
	case OP_COUNT: break;
	}
	return rerr(r, "unknown opcode %d", (int)op->code);
}

/* Sets o's actual shape from the value's type; a dynamic first dim takes the actual
 * length of the first operand with one (or the token count for arguments). */
static bool
shape_of(Run *r, const Op *op, Tensor *o, int64_t ntokens)
{
	Type t = r->f->vals[op->dst].type;
	if (t.dtype != DT_F32 && t.dtype != DT_I32)
		return rerr(r, "values of type %s are not supported", ir_dtype_name(t.dtype));
	if (t.rank > IR_MAX_RANK)
		return rerr(r, "rank %d out of range", t.rank);
	o->dt = t.dtype;
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

bool
interp_run(InterpState *s, const char *fn, const int32_t *tokens, int64_t ntokens, int32_t pos,
           float *out, char *err, size_t nerr)
{
	Run r = { .s = s, .err = err, .nerr = nerr };
	const Func *f = ir_find_func(s->m, fn);
	if (!f)
		return rerr(&r, "no entry '%s' in model '%s'", fn, s->m->name);
	r.f = f;
	if (ntokens < 1 || !tokens)
		return rerr(&r, "entry '%s' needs at least one token", fn);
	if (pos < 0)
		return rerr(&r, "negative position %d", pos);
	r.vals = xcalloc(f->nvals + 1, sizeof *r.vals);
	bool ok = true;
	const Tensor *result = NULL;
	for (uint32_t i = 0; i < f->nops && ok; i++) {
		const Op *op = &f->ops[i];
		r.op = op;
		if (op->dst >= f->nvals || op->nargs > IR_MAX_OPERANDS) {
			ok = rerr(&r, "malformed op");
			break;
		}
		for (int a = 0; a < op->nargs && ok; a++)
			if (op->args[a] >= f->nvals || f->vals[op->args[a]].def >= i ||
			    (!r.vals[op->args[a]].f && !r.vals[op->args[a]].i))
				ok = rerr(&r, "operand %d is not defined before its use", a);
		if (!ok)
			break;
		if (op->code == OP_RET) {
			if (op->nargs < 1)
				ok = rerr(&r, "returns nothing");
			else
				result = &r.vals[op->args[0]];
			break;
		}
		if (ir_op_arity[op->code] >= 0 && op->nargs != ir_op_arity[op->code]) {
			ok = rerr(&r, "expected %d operands, saw %d", ir_op_arity[op->code], op->nargs);
			break;
		}
		Tensor *o = &r.vals[op->dst];
		if (!shape_of(&r, op, o, ntokens)) {
			ok = false;
			break;
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
	}
	if (ok && !result)
		ok = rerr(&r, "entry '%s' has no 'ret'", fn);
	/* the caller sized out from the declared return type: the value must fit it */
	if (ok && (f->nrets < 1 || f->rets[0].dtype != result->dt || numel(result) > ir_type_numel(f->rets[0]) ||
	           (!f->rets[0].dyn0 && numel(result) != ir_type_numel(f->rets[0]))))
		ok = rerr(&r, "the returned value does not match the declared return type of '%s'", fn);
	if (ok) {
		int64_t n = numel(result);
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
	return ok;
}
