/* builder.c - typed constructors for the IR and the one shape function of every op.
 * ir_infer_type() computes an op's result type from its operand types and
 * attributes (ops.def documents the slots); the builder, the verifier and the
 * shape-inference pass all call it, so they agree on what is well typed.
 * Messages read "OP: expected X, saw Y" with the offending type spelled out, e.g.
 * "linear: expected weight with 288 columns, saw f32[768, 512]".
 * The bounded dynamic first dimension (dyn0) flows through row-wise ops unchanged;
 * ops that combine two row-shaped operands need the same rows, bound included. */
#include "ir/ir.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers ---- */

static bool
fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool
fail(char *err, size_t n, const char *fmt, ...)
{
	if (err && n) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, n, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* Last extent of a tensor type (1 for scalars). */
static int64_t
last(Type t)
{
	return t.rank ? t.dims[t.rank - 1] : 1;
}

/* Whether a and b have the same leading (row) axes, bound included. */
static bool
same_rows(Type a, Type b)
{
	if (a.rank != b.rank || a.dyn0 != b.dyn0)
		return false;
	for (int i = 0; i + 1 < a.rank; i++)
		if (a.dims[i] != b.dims[i])
			return false;
	return true;
}

#define TS(t, buf) ir_type_str((t), (buf), sizeof(buf))

/* ---- per-op rules ---- */

static bool
infer_embed(const char *nm, Type a, Type b, Type *out, char *err, size_t n)
{
	char s[96];
	if (a.dtype != DT_F32 || a.rank != 2 || a.dyn0)
		return fail(err, n, "%s: expected table f32[V, D], saw %s", nm, TS(a, s));
	if (b.dtype != DT_I32 || b.rank > 1)
		return fail(err, n, "%s: expected token ids i32 or i32[T], saw %s", nm, TS(b, s));
	*out = b;
	out->dtype = DT_F32;
	out->dims[b.rank] = a.dims[1];
	out->rank = (uint8_t)(b.rank + 1);
	return true;
}

static bool
infer_linear(const char *nm, Type a, Type b, Type *out, char *err, size_t n)
{
	char s[96];
	if (a.dtype != DT_F32 || a.rank < 1)
		return fail(err, n, "%s: expected input f32[.., K], saw %s", nm, TS(a, s));
	if (b.dtype != DT_F32 || b.rank != 2 || b.dyn0)
		return fail(err, n, "%s: expected weight f32[N, K], saw %s", nm, TS(b, s));
	if (b.dims[1] != last(a))
		return fail(err, n, "%s: expected weight with %lld columns, saw %s", nm, (long long)last(a), TS(b, s));
	*out = a;
	out->dims[a.rank - 1] = b.dims[0];
	return true;
}

static bool
infer_norm(const Func *f, const Op *op, const char *nm, Type a, Type b, Type *out, char *err, size_t n)
{
	char s[96];
	if (a.dtype != DT_F32 || a.rank < 1)
		return fail(err, n, "%s: expected input f32[.., D], saw %s", nm, TS(a, s));
	Type w = ir_type_vec(DT_F32, last(a));
	if (!ir_type_eq(b, w))
		return fail(err, n, "%s: expected weight f32[%lld], saw %s", nm, (long long)last(a), TS(b, s));
	if (op->code == OP_LAYERNORM && !ir_type_eq(f->vals[op->args[2]].type, w))
		return fail(err, n, "%s: expected bias f32[%lld], saw %s", nm, (long long)last(a),
		            TS(f->vals[op->args[2]].type, s));
	if (!(op->fa[0] >= 0.0f))
		return fail(err, n, "%s: expected eps >= 0, saw %g", nm, (double)op->fa[0]);
	*out = a;
	return true;
}

static bool
infer_rope(const char *nm, const Op *op, Type a, Type b, Type *out, char *err, size_t n)
{
	char s[96];
	if (a.dtype != DT_F32 || a.rank < 1)
		return fail(err, n, "%s: expected input f32[.., H*hd], saw %s", nm, TS(a, s));
	if (b.dtype != DT_I32 || b.rank != 0)
		return fail(err, n, "%s: expected position i32, saw %s", nm, TS(b, s));
	int64_t h = op->ia[0], hd = op->ia[1] > 0 ? op->ia[1] : (h > 0 ? last(a) / h : 0);
	if (h <= 0 || op->ia[1] < 0 || hd <= 0 || h * hd != last(a) || hd % 2 != 0)
		return fail(err, n, "%s: expected %lld features to split into %lld heads of an even size, saw %s", nm,
		            (long long)last(a), (long long)h, TS(a, s));
	if (op->ia[2] != 0 && op->ia[2] != 1)
		return fail(err, n, "%s: expected style 0 (half) or 1 (interleaved), saw %lld", nm, (long long)op->ia[2]);
	if (!(op->fa[0] > 0.0f))
		return fail(err, n, "%s: expected theta > 0, saw %g", nm, (double)op->fa[0]);
	if (!(op->fa[1] >= 0.0f) || !isfinite(op->fa[1]) || (op->ia[3] != 0 && !(op->fa[1] > 0.0f)))
		return fail(err, n, "%s: expected a scaling factor >= 0 (> 0 with original_ctx), saw %g", nm, (double)op->fa[1]);
	if (op->ia[3] < 0 || (op->ia[3] > 0 && !(op->fa[2] > 0.0f && op->fa[3] > op->fa[2] && isfinite(op->fa[3]))))
		return fail(err, n, "%s: llama3 scaling expects original_ctx > 0 and 0 < low_freq_factor < high_freq_factor,"
		            " saw %lld, %g, %g", nm, (long long)op->ia[3], (double)op->fa[2], (double)op->fa[3]);
	if (op->ia[3] == 0 && (op->fa[2] != 0.0f || op->fa[3] != 0.0f))
		return fail(err, n, "%s: low_freq_factor and high_freq_factor need original_ctx", nm);
	*out = a;
	return true;
}

/* The rotation frequency of pair j of a head of size hd: theta^(-2j/hd), then
 * scaled.  Linear scaling (factor > 0, original_ctx 0) divides every frequency by
 * the factor; Llama 3 scaling (original_ctx > 0) divides the low frequencies (wave
 * length above original_ctx / low_freq_factor) by the factor, keeps the high ones
 * (wave length below original_ctx / high_freq_factor) and blends in between with
 * s = (original_ctx / wave length - low) / (high - low): (1 - s) f / factor + s f. */
double
ir_rope_freq(const Op *op, int64_t j, int64_t hd)
{
	double f = pow((double)op->fa[0], -2.0 * (double)j / (double)hd);
	double factor = op->fa[1], low = op->fa[2], high = op->fa[3], orig = (double)op->ia[3];
	if (!(factor > 0.0))
		return f;
	if (op->ia[3] <= 0)
		return f / factor;
	double wavelen = 2.0 * M_PI / f;
	if (wavelen < orig / high)
		return f;
	if (wavelen > orig / low)
		return f / factor;
	double s = (orig / wavelen - low) / (high - low);
	return (1.0 - s) * f / factor + s * f;
}

/* Row index i of a value of type a (what: "row", "query row"): in -T..T-1, and 0 or
 * -1 when T varies (a prefill's length is known only at run time). */
static bool
row_index_fits(Type a, int64_t i, const char *what, const char *nm, char *err, size_t n)
{
	char s[96];
	if (a.dyn0 && i != 0 && i != -1)
		return fail(err, n, "%s: expected %s 0 or -1 of %s (its length varies), saw %lld", nm, what, TS(a, s),
		            (long long)i);
	if (!a.dyn0 && (i >= a.dims[0] || i < -a.dims[0]))
		return fail(err, n, "%s: expected %s in %lld..%lld, saw %lld", nm, what, (long long)-a.dims[0],
		            (long long)a.dims[0] - 1, (long long)i);
	return true;
}

static bool
infer_attention(const Func *f, const Op *op, const char *nm, Type *out, char *err, size_t n)
{
	char s[96], s2[96];
	Type q = f->vals[op->args[0]].type, k = f->vals[op->args[1]].type;
	Type v = f->vals[op->args[2]].type, p = f->vals[op->args[3]].type;
	int64_t h = op->ia[0], kh = op->ia[1];
	if (q.dtype != DT_F32 || q.rank < 1)
		return fail(err, n, "%s: expected q f32[.., H*hd], saw %s", nm, TS(q, s));
	if (h <= 0 || kh <= 0 || h % kh != 0)
		return fail(err, n, "%s: expected heads divisible by kv_heads, saw %lld heads and %lld kv heads", nm,
		            (long long)h, (long long)kh);
	if (last(q) % h != 0)
		return fail(err, n, "%s: expected q to split into %lld heads, saw %s", nm, (long long)h, TS(q, s));
	int64_t hd = last(q) / h;
	Type kv = q;
	kv.dims[q.rank - 1] = kh * hd;
	bool one_row = op->code == OP_ATTENTION && q.rank == 1 && k.rank == 2;
	/* the one-row form (q[H*hd], k[T, KH*hd]): ia[3] names a row of k */
	if (one_row && !row_index_fits(k, op->ia[3], "query row", nm, err, n))
		return false;
	if (one_row) {
		kv = k;
		kv.dims[1] = kh * hd;
	}
	if (op->code == OP_ATTENTION && !one_row && op->ia[3] != 0)
		return fail(err, n, "%s: expected row 0 when q has the rows of k, saw %lld", nm, (long long)op->ia[3]);
	if (!ir_type_eq(k, kv))
		return fail(err, n, "%s: expected k %s, saw %s", nm, TS(kv, s2), TS(k, s));
	if (!ir_type_eq(v, kv))
		return fail(err, n, "%s: expected v %s, saw %s", nm, TS(kv, s2), TS(v, s));
	if (p.dtype != DT_I32 || p.rank != 0)
		return fail(err, n, "%s: expected position i32, saw %s", nm, TS(p, s));
	if (op->ia[2] < -1)
		return fail(err, n, "%s: expected state index >= -1, saw %lld", nm, (long long)op->ia[2]);
	*out = q;
	return true;
}

/* The sparse forms: a cache, and the selection's attributes in range. */
static bool
infer_sparse_attention(const Func *f, const Op *op, const char *nm, char *err, size_t n)
{
	char s[96];
	if (op->ia[2] < 0)
		return fail(err, n, "%s: expected a state (a kv cache), saw %lld", nm, (long long)op->ia[2]);
	if (op->code == OP_ATTENTION_QUEST) {
		Type b = f->vals[op->args[4]].type;
		if (b.dtype != DT_I32 || b.rank != 0)
			return fail(err, n, "%s: expected budget i32, saw %s", nm, TS(b, s));
		if (op->ia[3] < 0 || op->ia[4] < 0 || op->ia[5] < 0)
			return fail(err, n, "%s: expected budget >= 0, sinks >= 0 and window >= 0, saw %lld, %lld, %lld", nm,
			            (long long)op->ia[3], (long long)op->ia[4], (long long)op->ia[5]);
		return true;
	}
	if (op->ia[3] < 1 || op->ia[4] < 0 || op->ia[5] < 0)
		return fail(err, n, "%s: expected block >= 1, topk >= 0 and min_tokens >= 0, saw %lld, %lld, %lld", nm,
		            (long long)op->ia[3], (long long)op->ia[4], (long long)op->ia[5]);
	if (op->ia[4] == 0 && !(op->fa[0] > 0 && op->fa[0] <= 1))
		return fail(err, n, "%s: expected topk >= 1 or gamma in (0, 1], saw gamma %g", nm, (double)op->fa[0]);
	return true;
}

/* positions: one position per token, so the result keeps the tokens' shape, bound
 * included (prefill and forward see the same dynamic length as the embedding). */
static bool
infer_positions(const char *nm, Type a, Type b, Type *out, char *err, size_t n)
{
	char s[96];
	if (a.dtype != DT_I32 || a.rank > 1)
		return fail(err, n, "%s: expected token ids i32 or i32[T], saw %s", nm, TS(a, s));
	if (b.dtype != DT_I32 || b.rank != 0)
		return fail(err, n, "%s: expected start position i32, saw %s", nm, TS(b, s));
	*out = a;
	return true;
}

static bool
infer_row(const char *nm, const Op *op, Type a, Type *out, char *err, size_t n)
{
	char s[96];
	if (a.dtype == DT_I32 && a.rank != 1)
		return fail(err, n, "%s: expected positions i32[T], saw %s", nm, TS(a, s));
	if (a.dtype != DT_I32 && (a.dtype != DT_F32 || a.rank != 2))
		return fail(err, n, "%s: expected matrix f32[T, D], saw %s", nm, TS(a, s));
	if (!row_index_fits(a, op->ia[0], "row", nm, err, n))
		return false;
	*out = a.rank == 1 ? ir_type_scalar(DT_I32) : ir_type_vec(DT_F32, a.dims[1]);
	return true;
}

static bool
infer_concat(const Func *f, const Op *op, const char *nm, Type a, Type *out, char *err, size_t n)
{
	char s[96], s2[96];
	if (op->nargs < 1)
		return fail(err, n, "%s: expected at least 1 operand, saw 0", nm);
	int64_t sum = 0;
	for (uint32_t i = 0; i < op->nargs; i++) {
		Type t = f->vals[op->args[i]].type;
		if (t.dtype != DT_F32 || t.rank < 1 || !same_rows(a, t))
			return fail(err, n, "%s: expected operand %u with the rows of %s, saw %s", nm, i, TS(a, s2),
			            TS(t, s));
		sum += last(t);
	}
	*out = a;
	out->dims[a.rank - 1] = sum;
	return true;
}

/* cmp: two operands of one type (or a scalar second operand), f32 or i32. */
static bool
infer_cmp(const char *nm, const Op *op, Type a, Type b, Type *out, char *err, size_t n)
{
	char s[96], s2[96];
	if ((a.dtype != DT_F32 && a.dtype != DT_I32) || a.dtype != b.dtype || (!ir_type_eq(a, b) && b.rank != 0))
		return fail(err, n, "%s: expected f32 or i32 operands of one type, saw %s and %s", nm, TS(a, s), TS(b, s2));
	if (op->ia[0] < 0 || op->ia[0] > 5)
		return fail(err, n, "%s: expected a predicate 0..5, saw %lld", nm, (long long)op->ia[0]);
	*out = ir_type_scalar(DT_BOOL);
	return true;
}

/* kv_write: k and v of one shape [.., kv_heads * head_dim] into a cache of that shape. */
static bool
infer_kv_write(const Module *m, const Func *f, const Op *op, const char *nm, Type *out, char *err, size_t n)
{
	char s[96], s2[96];
	Type k = f->vals[op->args[0]].type, v = f->vals[op->args[1]].type, p = f->vals[op->args[2]].type;
	if (k.dtype != DT_F32 || k.rank < 1 || k.rank > 2 || !ir_type_eq(k, v))
		return fail(err, n, "%s: expected k and v f32 of one type, saw %s and %s", nm, TS(k, s), TS(v, s2));
	if (p.dtype != DT_I32 || p.rank != 0)
		return fail(err, n, "%s: expected position i32, saw %s", nm, TS(p, s));
	if (!m || op->ia[2] < 0 || op->ia[2] >= m->nstates)
		return fail(err, n, "%s: expected a state index below %u, saw %lld", nm, m ? m->nstates : 0,
		            (long long)op->ia[2]);
	const State *st = &m->states[op->ia[2]];
	if (op->ia[1] != st->kv_heads || last(k) != st->kv_heads * st->head_dim)
		return fail(err, n, "%s: expected rows of %lld x %lld for state '%s', saw %s with kv_heads %lld", nm,
		            (long long)st->kv_heads, (long long)st->head_dim, st->name, TS(k, s), (long long)op->ia[1]);
	*out = ir_type_scalar(DT_BOOL);
	return true;
}

bool
ir_infer_type(const Module *m, const Func *f, const Op *op, Type *out, char *err, size_t nerr)
{
	char s[96], s2[96];
	if ((unsigned)op->code >= OP_COUNT)
		return fail(err, nerr, "unknown opcode %d", (int)op->code);
	const char *nm = ir_op_names[op->code];
	int ar = ir_op_arity[op->code];
	if (ar >= 0 && op->nargs != ar)
		return fail(err, nerr, "%s: expected %d operand%s, saw %u", nm, ar, ar == 1 ? "" : "s", op->nargs);
	if (op->nargs > IR_MAX_OPERANDS)
		return fail(err, nerr, "%s: expected at most %d operands, saw %u", nm, IR_MAX_OPERANDS, op->nargs);
	for (uint32_t i = 0; i < op->nargs; i++) {
		if (op->args[i] >= f->nvals)
			return fail(err, nerr, "%s: operand %u is not a value of '%s'", nm, i, f->name);
		if (!ir_type_valid(f->vals[op->args[i]].type))
			return fail(err, nerr, "%s: operand %u has a malformed type %s", nm, i,
			            TS(f->vals[op->args[i]].type, s));
	}
	Type a = op->nargs > 0 ? f->vals[op->args[0]].type : (Type){ 0 };
	Type b = op->nargs > 1 ? f->vals[op->args[1]].type : (Type){ 0 };
	*out = a;
	if (ir_op_is_unary_elemwise(op->code)) { /* scale, silu, gelu, tanh, ...: f32 of the operand's shape */
		if (a.dtype != DT_F32)
			return fail(err, nerr, "%s: expected an f32 operand, saw %s", nm, TS(a, s));
		return true;
	}
	switch (op->code) {
	case OP_ARG:
		if (op->ia[0] < 0 || op->ia[0] >= f->nargs)
			return fail(err, nerr, "%s: expected an argument index below %u, saw %lld", nm, f->nargs,
			            (long long)op->ia[0]);
		*out = f->args[op->ia[0]].type;
		return true;
	case OP_PARAM:
		if (!m || op->ia[0] < 0 || op->ia[0] >= m->nparams)
			return fail(err, nerr, "%s: expected a param index below %u, saw %lld", nm, m ? m->nparams : 0,
			            (long long)op->ia[0]);
		*out = m->params[op->ia[0]].type;
		return true;
	case OP_CONST: {
		/* A constant keeps the type it was given (a splat of its value); only the
		 * dtype decides which attribute slot holds the value. */
		Type t = op->dst < f->nvals ? f->vals[op->dst].type : ir_type_scalar(DT_F32);
		if (!ir_type_valid(t) || (t.dtype != DT_F32 && t.dtype != DT_I32) || t.dyn0)
			return fail(err, nerr, "%s: expected an f32 or i32 type of static shape, saw %s", nm, TS(t, s));
		*out = t;
		return true;
	}
	case OP_EMBED:
		return infer_embed(nm, a, b, out, err, nerr);
	case OP_LINEAR:
		return infer_linear(nm, a, b, out, err, nerr);
	case OP_ADD:
	case OP_SUB:
	case OP_MUL:
		if (a.dtype != DT_F32)
			return fail(err, nerr, "%s: expected f32 operands, saw %s", nm, TS(a, s));
		/* same shapes, or a row b[N] repeated over every row of a[.., N] (a bias) */
		if (!ir_type_eq(a, b) && !(b.dtype == DT_F32 && b.rank == 1 && a.rank > 1 && b.dims[0] == last(a)))
			return fail(err, nerr, "%s: expected second operand %s, saw %s", nm, TS(a, s2), TS(b, s));
		return true;
	case OP_SOFTMAX:
		if (a.dtype != DT_F32 || a.rank < 1)
			return fail(err, nerr, "%s: expected f32[.., N], saw %s", nm, TS(a, s));
		return true;
	case OP_RMSNORM:
	case OP_LAYERNORM:
		return infer_norm(f, op, nm, a, b, out, err, nerr);
	case OP_ROPE:
		return infer_rope(nm, op, a, b, out, err, nerr);
	case OP_ATTENTION:
		return infer_attention(f, op, nm, out, err, nerr);
	case OP_ATTENTION_QUEST:
	case OP_ATTENTION_BLOCK:
		return infer_attention(f, op, nm, out, err, nerr) && infer_sparse_attention(f, op, nm, err, nerr);
	case OP_ARGMAX:
		if (a.dtype != DT_F32 || a.rank < 1 || a.rank > 2)
			return fail(err, nerr, "%s: expected f32[N] or f32[T, N], saw %s", nm, TS(a, s));
		out->dtype = DT_I32;
		out->rank = (uint8_t)(a.rank - 1);
		out->dims[a.rank - 1] = 0;
		if (out->rank == 0)
			out->dyn0 = false;
		return true;
	case OP_POSITIONS:
		return infer_positions(nm, a, b, out, err, nerr);
	case OP_ROW:
		return infer_row(nm, op, a, out, err, nerr);
	case OP_SLICE:
		if (a.dtype != DT_F32 || a.rank < 1)
			return fail(err, nerr, "%s: expected f32[.., N], saw %s", nm, TS(a, s));
		if (op->ia[0] < 0 || op->ia[1] <= 0 || op->ia[1] > last(a) || op->ia[0] > last(a) - op->ia[1])
			return fail(err, nerr, "%s: expected start and length inside %lld columns, saw %lld and %lld", nm,
			            (long long)last(a), (long long)op->ia[0], (long long)op->ia[1]);
		out->dims[a.rank - 1] = op->ia[1];
		return true;
	case OP_CONCAT:
		return infer_concat(f, op, nm, a, out, err, nerr);
	case OP_RET:
		if (op->nargs == 0)
			*out = ir_type_scalar(DT_F32);
		return true;
	case OP_IF:
		if (a.dtype != DT_BOOL || a.rank != 0)
			return fail(err, nerr, "%s: expected a bool condition, saw %s", nm, TS(a, s));
		*out = ir_type_scalar(DT_BOOL);
		return true;
	case OP_ELSE:
	case OP_END:
	case OP_STAT:
		*out = ir_type_scalar(DT_BOOL);
		return true;
	case OP_PHI:
		if (!ir_type_eq(a, b))
			return fail(err, nerr, "%s: expected operands of one type, saw %s and %s", nm, TS(a, s), TS(b, s2));
		return true;
	case OP_CMP:
		return infer_cmp(nm, op, a, b, out, err, nerr);
	case OP_AND:
	case OP_OR:
	case OP_NOT:
		for (uint32_t i = 0; i < op->nargs; i++)
			if (f->vals[op->args[i]].type.dtype != DT_BOOL || f->vals[op->args[i]].type.rank != 0)
				return fail(err, nerr, "%s: expected bool operands, saw %s", nm,
				            TS(f->vals[op->args[i]].type, s));
		return true;
	case OP_SELECT: {
		Type c = f->vals[op->args[2]].type;
		if (a.dtype != DT_BOOL || a.rank != 0)
			return fail(err, nerr, "%s: expected a bool condition, saw %s", nm, TS(a, s));
		if (!ir_type_eq(b, c) || (b.dtype != DT_F32 && b.dtype != DT_I32))
			return fail(err, nerr, "%s: expected two f32 or i32 operands of one type, saw %s and %s", nm,
			            TS(b, s), TS(c, s2));
		*out = b;
		return true;
	}
	case OP_MARGIN:
	case OP_MAXPROB:
	case OP_ENTROPY:
		if (a.dtype != DT_F32 || a.rank < 1 || a.rank > 2)
			return fail(err, nerr, "%s: expected logits f32[N] or f32[T, N], saw %s", nm, TS(a, s));
		*out = ir_type_scalar(DT_F32);
		return true;
	case OP_COSINE:
		if (a.dtype != DT_F32 || a.rank < 1 || a.rank > 2 || !ir_type_eq(a, b))
			return fail(err, nerr, "%s: expected two f32 states of one type, saw %s and %s", nm, TS(a, s),
			            TS(b, s2));
		*out = ir_type_scalar(DT_F32);
		return true;
	case OP_DECAY: {
		Type c = f->vals[op->args[2]].type;
		if (a.dtype != DT_F32 || a.rank || b.dtype != DT_F32 || b.rank || c.dtype != DT_I32 || c.rank)
			return fail(err, nerr, "%s: expected (f32, f32, i32) scalars, saw %s, %s and %s", nm, TS(a, s),
			            TS(b, s2), TS(c, (char[96]){ 0 }));
		if (op->ia[0] < 1)
			return fail(err, nerr, "%s: expected a length n >= 1, saw %lld", nm, (long long)op->ia[0]);
		return true;
	}
	case OP_KNOB:
		if (!m || op->ia[0] < 0 || op->ia[0] >= m->nknobs)
			return fail(err, nerr, "%s: expected a knob index below %u, saw %lld", nm, m ? m->nknobs : 0,
			            (long long)op->ia[0]);
		*out = ir_type_scalar(m->knobs[op->ia[0]].dtype);
		return true;
	case OP_KV_WRITE:
		return infer_kv_write(m, f, op, nm, out, err, nerr);
	case OP_KNOB_SET:
		if (!m || op->ia[0] < 0 || op->ia[0] >= m->nknobs)
			return fail(err, nerr, "%s: expected a knob index below %u, saw %lld", nm, m ? m->nknobs : 0,
			            (long long)op->ia[0]);
		if (a.rank != 0 || a.dtype != m->knobs[op->ia[0]].dtype)
			return fail(err, nerr, "%s: expected a %s scalar for knob '%s', saw %s", nm,
			            ir_dtype_name(m->knobs[op->ia[0]].dtype), m->knobs[op->ia[0]].name, TS(a, s));
		*out = ir_type_scalar(DT_BOOL);
		return true;
	default: /* OP_COUNT; the elementwise ops of one operand are handled above */
		break;
	}
	return fail(err, nerr, "unknown opcode %d", (int)op->code);
}

/* ---- the builder ---- */

static ValueId
build(Builder *b, Opcode code, Type t, const ValueId *args, uint32_t nargs, const int64_t *ia, const float *fa,
      Loc loc)
{
	ValueId v = ir_emit(b->m, b->f, code, t, args, nargs, loc);
	Op *op = ir_def(b->f, v);
	if (ia)
		memcpy(op->ia, ia, sizeof op->ia);
	if (fa)
		memcpy(op->fa, fa, sizeof op->fa);
	op->layer = b->layer;
	return v;
}

/* Reports a builder error (when the builder has a Diag) and returns IR_NO_VALUE. */
static ValueId
report(Builder *b, Loc loc, const char *msg)
{
	if (b->diag)
		diag_error(b->diag, loc, "%s", msg);
	return IR_NO_VALUE;
}

ValueId
ir_b_arg(Builder *b, uint32_t index, Loc loc)
{
	if (index >= b->f->nargs) {
		char err[128];
		snprintf(err, sizeof err, "arg: expected an argument index below %u, saw %u", b->f->nargs, index);
		return report(b, loc, err);
	}
	int64_t ia[IR_NIA] = { index };
	ValueId v = build(b, OP_ARG, b->f->args[index].type, NULL, 0, ia, NULL, loc);
	b->f->vals[v].name = b->f->args[index].name;
	return v;
}

ValueId
ir_b_param(Builder *b, uint32_t param, Loc loc)
{
	if (param >= b->m->nparams) {
		char err[128];
		snprintf(err, sizeof err, "param: expected a param index below %u, saw %u", b->m->nparams, param);
		return report(b, loc, err);
	}
	int64_t ia[IR_NIA] = { param };
	return build(b, OP_PARAM, b->m->params[param].type, NULL, 0, ia, NULL, loc);
}

ValueId
ir_b_const_f32(Builder *b, float v, Loc loc)
{
	float fa[IR_NFA] = { v };
	return build(b, OP_CONST, ir_type_scalar(DT_F32), NULL, 0, NULL, fa, loc);
}

ValueId
ir_b_const_i32(Builder *b, int32_t v, Loc loc)
{
	int64_t ia[IR_NIA] = { v };
	return build(b, OP_CONST, ir_type_scalar(DT_I32), NULL, 0, ia, NULL, loc);
}

/* Appends " (operands: T1, T2)" to a type error unless it already names every
 * operand's type, so that both shapes of a mismatch are always shown. */
static void
name_operand_types(const Func *f, const ValueId *args, uint32_t nargs, char *err, size_t nerr)
{
	size_t n = strlen(err);
	bool all = true;
	char ts[IR_MAX_OPERANDS][96];
	for (uint32_t i = 0; i < nargs; i++)
		all &= strstr(err, ir_type_str(ir_vtype(f, args[i]), ts[i], sizeof ts[i])) != NULL;
	for (uint32_t i = 0; !all && i < nargs && n + 8 < nerr; i++)
		n += (size_t)snprintf(err + n, nerr - n, "%s%.90s%s", i ? ", " : " (operands: ", ts[i],
		                      i + 1 == nargs ? ")" : "");
}

ValueId
ir_b_op(Builder *b, Opcode code, const ValueId *args, uint32_t nargs, const int64_t *ia, const float *fa, Loc loc)
{
	char err[512];
	if ((unsigned)code >= OP_COUNT || nargs > IR_MAX_OPERANDS) {
		snprintf(err, sizeof err, "%s: expected at most %d operands, saw %u",
		         (unsigned)code < OP_COUNT ? ir_op_names[code] : "op", IR_MAX_OPERANDS, nargs);
		return report(b, loc, err);
	}
	for (uint32_t i = 0; i < nargs; i++)
		if (args[i] == IR_NO_VALUE)
			return IR_NO_VALUE; /* an operand already failed and was reported */
	if (code == OP_ARG)
		return ir_b_arg(b, ia ? (uint32_t)ia[0] : 0, loc);
	if (code == OP_PARAM)
		return ir_b_param(b, ia ? (uint32_t)ia[0] : 0, loc);
	if (code == OP_CONST) {
		bool is_f = fa != NULL;
		ValueId v = is_f ? ir_b_const_f32(b, fa[0], loc) : ir_b_const_i32(b, ia ? (int32_t)ia[0] : 0, loc);
		return v;
	}
	Op tmp = { .code = code, .dst = IR_NO_VALUE, .nargs = (uint8_t)nargs, .layer = b->layer, .loc = loc };
	if (nargs)
		memcpy(tmp.args, args, nargs * sizeof *args);
	if (ia)
		memcpy(tmp.ia, ia, sizeof tmp.ia);
	if (fa)
		memcpy(tmp.fa, fa, sizeof tmp.fa);
	Type t;
	if (!ir_infer_type(b->m, b->f, &tmp, &t, err, sizeof err)) {
		name_operand_types(b->f, args, nargs, err, sizeof err);
		return report(b, loc, err);
	}
	return build(b, code, t, args, nargs, tmp.ia, tmp.fa, loc);
}
